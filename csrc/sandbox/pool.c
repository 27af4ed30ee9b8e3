/*
 * pool.c -- the sandbox supervisor that lives in the trainer process.
 *
 * Owns: starting zygotes (exec of the interpreter with an empty environment
 * but for its own PYTHONHASHSEED, in a fresh pid namespace where permitted,
 * own session, parent-death signal), the batch dispatcher (poll over the
 * zygotes' sockets, pairs of requests kept on different zygotes for the
 * determinism check, an outer deadline per request), and replacing a zygote
 * that dies without losing its request.
 * Must not: interpret payloads (bytes only), trust any length a zygote sends
 * beyond the hard caps in sandbox.h, print, or leave a process behind.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef __NR_close_range
#define __NR_close_range 436
#endif

typedef struct {
    pid_t pid;
    int fd;
    uint64_t zid;
    uint32_t seed;
    uint32_t layers;
    int alive;
    int starting;   /* spawned by azr_sbx_pool_reseed, its hello not read yet */
    int busy;       /* requests sent and not answered yet (0..PIPELINE) */
    size_t req[2];  /* their indices, oldest first: the zygote answers in order */
    double deadline; /* outer deadline of req[0] */
    uint8_t *rbuf;
    size_t rlen, rcap;
} worker;

struct azr_sbx_pool {
    char *python, *driver, *ext_path, *scratch, *config_json;
    int use_namespaces;
    int startup_timeout_ms;
    worker *w;
    int nw;
    uint64_t next_zid;
    uint64_t spawned;
    pid_t owner; /* the process that started the zygotes */
};

/* Requests a zygote may hold: the one it runs and one waiting in its socket,
 * so it starts the next run without waiting for the supervisor to be
 * scheduled. Only small requests wait (a large one could fill the socket
 * buffer and block the supervisor). */
#define PIPELINE 2
#define PIPELINE_MAX_BYTES (32u << 10)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *dupstr(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static uint32_t fresh_seed(const azr_sbx_pool *p) {
    for (;;) {
        uint32_t s = 0;
        if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint32_t)(now_s() * 1e6);
        if (s == 0) continue;
        int clash = 0;
        for (int i = 0; i < p->nw; i++)
            if ((p->w[i].alive || p->w[i].starting) && p->w[i].seed == s) clash = 1;
        if (!clash) return s;
    }
}

static void worker_kill(worker *w) {
    /* Kill before closing: a zygote that saw its socket reset first (a
     * reply we never read is pending) would report a bad request. */
    if (w->pid > 0) kill(w->pid, SIGKILL);
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->pid > 0) {
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    w->pid = 0;
    w->alive = 0;
    w->starting = 0;
    w->busy = 0;
    w->rlen = 0;
}

/* Fork+exec one zygote; does not wait for its hello. */
static azr_status worker_spawn(azr_sbx_pool *p, worker *w) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return azr_set_error(AZR_ERR_SYSTEM, "sandbox: socketpair failed: %s", strerror(errno));
    w->seed = fresh_seed(p);
    char envbuf[64];
    snprintf(envbuf, sizeof envbuf, "PYTHONHASHSEED=%u", (unsigned)w->seed);
    /* LD_BIND_NOW: the zygote resolves every symbol once at start-up, so its
     * children do not each resolve (and copy-on-write the GOT pages of) the
     * functions they call first. The zygote removes it from its environment
     * before reporting; runs see only an empty environment. */
    char bindnow[] = "LD_BIND_NOW=1";
    /* AZR_ZYGOTE_SLOT: the zygote's index in the pool, unique among live
     * zygotes; it sets the zygote's real-time clock offset (the driver's
     * _shift_wall_clock), which removes it before any run starts. */
    char slotbuf[40];
    snprintf(slotbuf, sizeof slotbuf, "AZR_ZYGOTE_SLOT=%d", (int)(w - p->w));
    char *envp[] = {envbuf, bindnow, slotbuf, NULL};
    char *argv_ns[] = {p->python, "-S", "-s", "-B", "-P", p->driver, p->ext_path, p->scratch,
                       p->config_json, "1", NULL};
    char *argv_plain[] = {p->python, "-S", "-s", "-B", "-P", p->driver, p->ext_path, p->scratch,
                          p->config_json, "0", NULL};
    const pid_t parent = getpid();
    pid_t pid = -1;
    int in_ns = 0;
    if (p->use_namespaces && geteuid() == 0) {
        pid = (pid_t)syscall(SYS_clone, (unsigned long)(SIGCHLD | CLONE_NEWPID), NULL, NULL, NULL, NULL);
        if (pid >= 0) in_ns = 1;
    }
    if (pid < 0) pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only, then exec. */
        int fd = sv[1];
        if (fd != AZR_SBX_RESULT_FD) {
            if (dup2(fd, AZR_SBX_RESULT_FD) < 0) _exit(126);
        } else {
            fcntl(fd, F_SETFD, 0);
        }
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) { dup2(nul, 0); dup2(nul, 1); }
        syscall(__NR_close_range, 4u, ~0u, 0u);
        setsid();
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (!in_ns && getppid() != parent) _exit(125);
        execve(p->python, in_ns ? argv_ns : argv_plain, envp);
        _exit(127);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return azr_set_error(AZR_ERR_SYSTEM, "sandbox: cannot start a zygote: %s", strerror(errno));
    }
    w->pid = pid;
    w->fd = sv[0];
    w->zid = ++p->next_zid;
    w->alive = 0;
    w->busy = 0;
    w->rlen = 0;
    p->spawned++;
    return AZR_OK;
}

/* Wait for the hello of a spawned zygote (blocking, bounded). */
static azr_status worker_hello(azr_sbx_pool *p, worker *w) {
    uint8_t buf[12 + 1024];
    size_t got = 0, need = 12;
    double deadline = now_s() + p->startup_timeout_ms / 1000.0;
    while (got < need) {
        int ms = (int)((deadline - now_s()) * 1000.0);
        if (ms <= 0) {
            worker_kill(w);
            return azr_set_error(AZR_ERR_SYSTEM, "sandbox: a zygote did not start within %d ms",
                                 p->startup_timeout_ms);
        }
        struct pollfd pf = {w->fd, POLLIN, 0};
        int r = poll(&pf, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t n = recv(w->fd, buf + got, need - got, 0);
        if (n <= 0) {
            worker_kill(w);
            return azr_set_error(AZR_ERR_SYSTEM,
                                 "sandbox: a zygote exited during start-up (see its stderr; "
                                 "interpreter %s, driver %s)", p->python, p->driver);
        }
        got += (size_t)n;
        if (got == 12) {
            uint32_t h[3];
            memcpy(h, buf, 12);
            if (h[0] != AZR_SBX_HELLO_MAGIC || h[2] > 1024) {
                worker_kill(w);
                return azr_set_error(AZR_ERR_FORMAT, "sandbox: a zygote sent a bad hello");
            }
            need = 12 + h[2];
        }
    }
    uint32_t h[3];
    memcpy(h, buf, 12);
    w->layers = h[1];
    w->alive = 1;
    return AZR_OK;
}

azr_status azr_sbx_pool_new(const azr_sbx_pool_config *cfg, azr_sbx_pool **out) {
    if (!cfg || !out || !cfg->python || !cfg->driver || !cfg->ext_path || !cfg->scratch)
        return azr_set_error(AZR_ERR_INVALID, "sandbox: pool config needs python, driver, ext_path and scratch");
    if (cfg->workers < 2 || cfg->workers > 256)
        return azr_set_error(AZR_ERR_INVALID, "sandbox: workers must be in 2..256, got %d", cfg->workers);
    azr_sbx_pool *p = calloc(1, sizeof *p);
    if (!p) return azr_set_error(AZR_ERR_NOMEM, "sandbox: out of memory");
    p->python = dupstr(cfg->python);
    p->driver = dupstr(cfg->driver);
    p->ext_path = dupstr(cfg->ext_path);
    p->scratch = dupstr(cfg->scratch);
    p->config_json = dupstr(cfg->config_json ? cfg->config_json : "{}");
    p->use_namespaces = cfg->use_namespaces;
    p->startup_timeout_ms = cfg->startup_timeout_ms > 0 ? cfg->startup_timeout_ms : 30000;
    p->nw = cfg->workers;
    p->owner = getpid();
    p->w = calloc((size_t)p->nw, sizeof(worker));
    if (!p->python || !p->driver || !p->ext_path || !p->scratch || !p->config_json || !p->w) {
        azr_sbx_pool_free(p);
        return azr_set_error(AZR_ERR_NOMEM, "sandbox: out of memory");
    }
    for (int i = 0; i < p->nw; i++) p->w[i].fd = -1;
    azr_status st = AZR_OK;
    for (int i = 0; i < p->nw && st == AZR_OK; i++) st = worker_spawn(p, &p->w[i]);
    for (int i = 0; i < p->nw && st == AZR_OK; i++) st = worker_hello(p, &p->w[i]);
    if (st != AZR_OK) {
        azr_sbx_pool_free(p);
        return st;
    }
    *out = p;
    return AZR_OK;
}

void azr_sbx_pool_free(azr_sbx_pool *p) {
    if (!p) return;
    /* In a forked copy of the owner (e.g. a data-loader worker) the zygotes
     * are not ours: close our copies of the sockets, kill nothing. */
    const int owner = getpid() == p->owner;
    for (int i = 0; p->w && i < p->nw; i++) {
        if (owner) {
            worker_kill(&p->w[i]);
        } else if (p->w[i].fd >= 0) {
            close(p->w[i].fd);
        }
        free(p->w[i].rbuf);
    }
    free(p->w);
    free(p->python); free(p->driver); free(p->ext_path); free(p->scratch); free(p->config_json);
    free(p);
}

uint32_t azr_sbx_pool_layers(const azr_sbx_pool *p) {
    if (!p) return 0;
    uint32_t m = ~0u;
    int any = 0;
    for (int i = 0; i < p->nw; i++)
        if (p->w[i].alive) { m &= p->w[i].layers; any = 1; }
    return any ? m : 0;
}

int azr_sbx_pool_pids(const azr_sbx_pool *p, pid_t *pids, int cap) {
    int n = 0;
    for (int i = 0; p && i < p->nw; i++)
        if (p->w[i].pid > 0) {
            if (n < cap) pids[n] = p->w[i].pid;
            n++;
        }
    return n;
}

uint64_t azr_sbx_pool_spawned(const azr_sbx_pool *p) { return p ? p->spawned : 0; }

void azr_sbx_result_clear(azr_sbx_result *r) {
    if (!r) return;
    free(r->payload);
    free(r->out);
    memset(r, 0, sizeof *r);
}

static int send_all(int fd, const void *buf, size_t len) {
    const char *c = buf;
    while (len) {
        ssize_t n = send(fd, c, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {fd, POLLOUT, 0};
                if (poll(&pf, 1, 5000) <= 0) return -1;
                continue;
            }
            return -1;
        }
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_request(worker *w, const azr_sbx_request *r) {
    azr_sbx_req_hdr h = {AZR_SBX_REQ_MAGIC, r->mode, r->timeout_ms, r->memory_mb, r->output_cap,
                         r->result_cap, r->fsize_mb, r->a_len, r->b_len, r->c_len};
    if (send_all(w->fd, &h, sizeof h) != 0) return -1;
    if (r->a_len && send_all(w->fd, r->a, r->a_len) != 0) return -1;
    if (r->b_len && send_all(w->fd, r->b, r->b_len) != 0) return -1;
    if (r->c_len && send_all(w->fd, r->c, r->c_len) != 0) return -1;
    return 0;
}

/* Try to parse a complete reply from w->rbuf into res. 1 = done, 0 = need
 * more, -1 = protocol violation. */
static int parse_reply(worker *w, azr_sbx_result *res) {
    if (w->rlen < sizeof(azr_sbx_rep_hdr)) return 0;
    azr_sbx_rep_hdr h;
    memcpy(&h, w->rbuf, sizeof h);
    if (h.magic != AZR_SBX_REP_MAGIC || h.payload_len > AZR_SBX_MAX_REPLY ||
        h.out_len > AZR_SBX_MAX_REPLY || h.msg_len > 4096 || h.status >= AZR_SBX_NSTATUS)
        return -1;
    size_t total = sizeof h + (size_t)h.payload_len + h.out_len + h.msg_len;
    if (w->rlen < total) return 0;
    if (w->busy < 2 && w->rlen > total) return -1; /* more than was asked for */
    const uint8_t *q = w->rbuf + sizeof h;
    res->status = h.status;
    res->exit_code = h.exit_code;
    res->term_signal = h.term_signal;
    res->flags = h.flags;
    res->cpu_time = h.cpu_time;
    res->wall_time = h.wall_time;
    res->payload = malloc((size_t)h.payload_len + 1);
    res->out = malloc((size_t)h.out_len + 1);
    if (!res->payload || !res->out) {
        free(res->payload); free(res->out);
        res->payload = res->out = NULL;
        return -1;
    }
    memcpy(res->payload, q, h.payload_len);
    res->payload_len = h.payload_len;
    q += h.payload_len;
    memcpy(res->out, q, h.out_len);
    res->out_len = h.out_len;
    q += h.out_len;
    size_t m = h.msg_len < sizeof res->msg - 1 ? h.msg_len : sizeof res->msg - 1;
    memcpy(res->msg, q, m);
    res->msg[m] = '\0';
    res->zygote_id = w->zid;
    res->hash_seed = w->seed;
    /* Keep what follows (the start of the next reply). */
    memmove(w->rbuf, w->rbuf + total, w->rlen - total);
    w->rlen -= total;
    return 1;
}

/* Read what is available; returns -1 on EOF/error (zygote gone). */
static int worker_read(worker *w) {
    for (;;) {
        if (w->rcap - w->rlen < 65536) {
            size_t nc = w->rcap ? w->rcap * 2 : 131072;
            uint8_t *nb = realloc(w->rbuf, nc);
            if (!nb) return -1;
            w->rbuf = nb;
            w->rcap = nc;
        }
        ssize_t n = recv(w->fd, w->rbuf + w->rlen, w->rcap - w->rlen, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        if (n == 0) return -1;
        w->rlen += (size_t)n;
        if (w->rlen > AZR_SBX_MAX_REPLY + (size_t)8192) return -1;
    }
}

/* Replace a dead zygote; returns 0 when a new one is ready. */
static int worker_respawn(azr_sbx_pool *p, worker *w) {
    worker_kill(w);
    if (worker_spawn(p, w) != AZR_OK) return -1;
    if (worker_hello(p, w) != AZR_OK) return -1;
    return 0;
}

/* Make a zygote that is not alive ready: one started by
 * azr_sbx_pool_reseed only needs its hello read; anything else is
 * respawned. Returns 0 when it is ready. */
static int worker_ready(azr_sbx_pool *p, worker *w) {
    if (w->starting && w->pid > 0) {
        w->starting = 0;
        if (worker_hello(p, w) == AZR_OK) return 0;
    }
    return worker_respawn(p, w);
}

int azr_sbx_pool_reseed(azr_sbx_pool *p, int count) {
    if (!p || getpid() != p->owner) return 0;
    int done = 0;
    for (; done < count; done++) {
        worker *oldest = NULL;
        for (int i = 0; i < p->nw; i++) {
            worker *w = &p->w[i];
            if (w->alive && !w->busy && (!oldest || w->zid < oldest->zid)) oldest = w;
        }
        if (!oldest) break;
        worker_kill(oldest);
        if (worker_spawn(p, oldest) != AZR_OK) break; /* respawned at its next use */
        oldest->starting = 1;
    }
    return done;
}

static void set_error(azr_sbx_result *r, const char *msg) {
    azr_sbx_result_clear(r);
    r->status = AZR_SBX_ERROR;
    r->exit_code = -1;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

/* A zygote is being replaced: put its unanswered requests back in the
 * queue. The one it was running (the oldest, when `running`) counts as a
 * try and fails after two; the ones waiting behind it never started and
 * count nothing. */
static void requeue_worker(worker *w, azr_sbx_result *results, uint8_t *state, uint32_t *ran_seed,
                           uint8_t *tries, size_t *head, size_t *done, int running) {
    for (int k = 0; k < w->busy; k++) {
        size_t i = w->req[k];
        if (k == 0 && running && ++tries[i] >= 2) {
            set_error(&results[i], "sandbox: the zygote running this request died twice");
            state[i] = 2;
            (*done)++;
            continue;
        }
        state[i] = 0;
        ran_seed[i] = 0;
        if (i < *head) *head = i;
    }
    w->busy = 0;
}

azr_status azr_sbx_pool_run(azr_sbx_pool *p, const azr_sbx_request *reqs, size_t n,
                            azr_sbx_result *results, azr_sbx_cancel_fn cancel, void *ctx) {
    if (!p) return azr_set_error(AZR_ERR_INVALID, "sandbox: pool is NULL (closed?)");
    if (getpid() != p->owner)
        return azr_set_error(AZR_ERR_STATE, "sandbox: this Executor belongs to process %d; a forked child "
                             "must create its own", (int)p->owner);
    if (n == 0) return AZR_OK;
    if (!reqs || !results) return azr_set_error(AZR_ERR_INVALID, "sandbox: NULL requests or results");
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].pair >= (int64_t)n || reqs[i].pair < -1 || (reqs[i].a_len && !reqs[i].a) ||
            (reqs[i].b_len && !reqs[i].b) || (reqs[i].c_len && !reqs[i].c))
            return azr_set_error(AZR_ERR_INVALID, "sandbox: request %zu is malformed", i);
        if (reqs[i].pair >= 0 && reqs[reqs[i].pair].pair != reqs[i].pair)
            return azr_set_error(AZR_ERR_INVALID, "sandbox: request %zu names %lld as its group's first "
                                 "request, which does not name itself", i, (long long)reqs[i].pair);
        memset(&results[i], 0, sizeof results[i]);
    }
    uint32_t *ran_seed = calloc(n, sizeof *ran_seed);
    uint8_t *state = calloc(n, 1);   /* 0 queued, 1 running, 2 done */
    uint8_t *tries = calloc(n, 1);
    int64_t *gnext = malloc(n * sizeof *gnext); /* next request of the same group, or -1 */
    int64_t *glast = malloc(n * sizeof *glast); /* per group leader: its last member so far */
    if (!ran_seed || !state || !tries || !gnext || !glast) {
        free(ran_seed); free(state); free(tries); free(gnext); free(glast);
        return azr_set_error(AZR_ERR_NOMEM, "sandbox: out of memory for %zu requests", n);
    }
    /* Groups: linked lists from each leader through its members, in order. */
    for (size_t i = 0; i < n; i++) gnext[i] = glast[i] = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t L = reqs[i].pair;
        if (L < 0) continue;
        if ((size_t)L == i) {
            glast[i] = (int64_t)i;
            continue;
        }
        if (glast[L] < 0) glast[L] = L; /* the leader comes later in the batch */
        gnext[glast[L]] = (int64_t)i;
        glast[L] = (int64_t)i;
    }
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].pair != (int64_t)i) continue;
        int size = 0;
        for (int64_t j = (int64_t)i; j >= 0; j = gnext[j]) size++;
        if (size > p->nw) {
            free(ran_seed); free(state); free(tries); free(gnext); free(glast);
            return azr_set_error(AZR_ERR_INVALID, "sandbox: a group of %d requests needs as many zygotes with "
                                 "distinct hash seeds; the pool has %d", size, p->nw);
        }
    }
    size_t done = 0, head = 0;
    azr_status st = AZR_OK;
    struct pollfd *pf = calloc((size_t)p->nw, sizeof *pf);
    int *pw = calloc((size_t)p->nw, sizeof *pw);
    if (!pf || !pw) {
        free(pf); free(pw); free(ran_seed); free(state); free(tries); free(gnext); free(glast);
        return azr_set_error(AZR_ERR_NOMEM, "sandbox: out of memory");
    }
    double next_cancel_check = now_s() + 0.1;
    double last_progress = now_s();
    while (done < n) {
        /* Dispatch to idle zygotes. */
        int any_alive = 0;
        for (int wi = 0; wi < p->nw; wi++) {
            worker *w = &p->w[wi];
            if (!w->alive && worker_ready(p, w) != 0) continue;
            any_alive = 1;
            while (w->alive && w->busy < PIPELINE) {
                while (head < n && state[head] != 0) head++;
                size_t pick = n;
                for (size_t i = head; i < n; i++) {
                    if (state[i] != 0) continue;
                    int clash = 0; /* another request of its group ran with this seed */
                    for (int64_t j = reqs[i].pair; j >= 0 && !clash; j = gnext[j])
                        clash = (size_t)j != i && ran_seed[j] != 0 && ran_seed[j] == w->seed;
                    if (clash) continue;
                    pick = i;
                    break;
                }
                if (pick == n) break;
                if (w->busy && (size_t)reqs[pick].a_len + reqs[pick].b_len + reqs[pick].c_len > PIPELINE_MAX_BYTES)
                    break;
                if (send_request(w, &reqs[pick]) != 0) {
                    /* The zygote is gone: its requests go back to the queue
                     * (the one it was running counts as a try). */
                    requeue_worker(w, results, state, ran_seed, tries, &head, &done, 1);
                    worker_kill(w);
                    break;
                }
                state[pick] = 1;
                last_progress = now_s();
                ran_seed[pick] = w->seed;
                if (w->busy == 0) w->deadline = now_s() + reqs[pick].timeout_ms / 1000.0 + 10.0;
                w->req[w->busy++] = pick;
            }
        }
        if (!any_alive) {
            st = azr_set_error(AZR_ERR_SYSTEM, "sandbox: no zygote could be started: %s", azr_last_error());
            break;
        }
        int np = 0;
        double soonest = now_s() + 0.1;
        for (int wi = 0; wi < p->nw; wi++) {
            worker *w = &p->w[wi];
            if (!w->alive || !w->busy) continue;
            pf[np] = (struct pollfd){w->fd, POLLIN, 0};
            pw[np++] = wi;
            if (w->deadline < soonest) soonest = w->deadline;
        }
        int ms = (int)((soonest - now_s()) * 1000.0) + 1;
        if (ms < 0) ms = 0;
        if (np == 0) {
            /* Queued work but no zygote may take it (group constraint with
             * only dead peers): wait briefly for respawns, not forever. */
            if (now_s() - last_progress > p->startup_timeout_ms / 1000.0 + 5.0) {
                st = azr_set_error(AZR_ERR_SYSTEM, "sandbox: no zygote with an unused hash seed is available "
                                   "for the determinism check (zygotes keep failing to start)");
                break;
            }
            poll(NULL, 0, 5);
        } else {
            int r = poll(pf, (nfds_t)np, ms);
            if (r < 0 && errno != EINTR) {
                st = azr_set_error(AZR_ERR_SYSTEM, "sandbox: poll failed: %s", strerror(errno));
                break;
            }
            for (int k = 0; r > 0 && k < np; k++) {
                if (!pf[k].revents) continue;
                worker *w = &p->w[pw[k]];
                int rr = worker_read(w);
                int pr = 0, retired = 0;
                while (w->busy > 0 && (pr = parse_reply(w, &results[w->req[0]])) == 1) {
                    retired |= (results[w->req[0]].flags & AZR_SBX_F_RETIRED) != 0;
                    state[w->req[0]] = 2;
                    done++;
                    last_progress = now_s();
                    w->req[0] = w->req[1];
                    if (--w->busy > 0) w->deadline = now_s() + reqs[w->req[0]].timeout_ms / 1000.0 + 10.0;
                }
                if (retired) {
                    /* It could not clean its scratch and exits: replace it
                     * now. The request waiting behind never started. */
                    requeue_worker(w, results, state, ran_seed, tries, &head, &done, 0);
                    worker_kill(w);
                    continue;
                }
                if (pr == 0 && w->busy == 0 && w->rlen > 0) pr = -1; /* a reply nobody asked for */
                if (rr < 0 || pr < 0) {
                    requeue_worker(w, results, state, ran_seed, tries, &head, &done, 1);
                    worker_kill(w);
                }
            }
        }
        double t = now_s();
        for (int wi = 0; wi < p->nw; wi++) {
            worker *w = &p->w[wi];
            if (!w->alive || !w->busy || t < w->deadline) continue;
            size_t i = w->req[0];
            set_error(&results[i], "sandbox: the zygote did not answer within the outer deadline; replaced");
            results[i].status = AZR_SBX_TIMEOUT;
            state[i] = 2;
            done++;
            w->req[0] = w->req[1];
            w->busy--;
            requeue_worker(w, results, state, ran_seed, tries, &head, &done, 1);
            worker_kill(w);
        }
        if (cancel && t >= next_cancel_check) {
            next_cancel_check = t + 0.1;
            if (cancel(ctx)) {
                st = azr_set_error(AZR_ERR_INTERRUPTED, "sandbox: batch cancelled");
                break;
            }
        }
    }
    if (st != AZR_OK) {
        for (int wi = 0; wi < p->nw; wi++)
            if (p->w[wi].busy) worker_kill(&p->w[wi]);
        for (size_t i = 0; i < n; i++)
            if (state[i] != 2) set_error(&results[i], st == AZR_ERR_INTERRUPTED ? "cancelled" : azr_last_error());
    }
    free(pf); free(pw); free(ran_seed); free(state); free(tries); free(gnext); free(glast);
    return st;
}
