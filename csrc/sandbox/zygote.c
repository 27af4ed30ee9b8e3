/*
 * zygote.c -- the fork server that runs inside each pre-warmed Python zygote.
 *
 * Owns: zygote set-up (mount/net namespaces, a tmpfs for scratch, making the
 * interpreter's own files reachable by the unprivileged run uid, descriptors
 * for the Landlock rules), the serve loop (read a request, fork a child,
 * install every layer in the child or fail closed, supervise it from outside
 * with a pidfd and a wall-clock deadline, read its stdout/stderr and result
 * pipe with hard caps, SIGKILL it, reap it, reply to the supervisor).
 * Must not: run or parse user code (the Python driver does that in the child),
 * print, or leave a child behind: every child is killed and reaped before the
 * next request is read; or serve another run once its scratch cannot be made
 * clean again (it retires, and the supervisor starts a fresh zygote).
 */
#include "sandbox.h"
#include "layers.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>
#include <linux/capability.h>

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif

extern char **environ;

#define MAX_RO 32
#define MAX_DEV 8

struct azr_sbx_zygote {
    azr_sbx_zygote_config cfg;
    uint32_t layers;
    int landlock_abi;
    int is_root;
    int ro_fds[MAX_RO];
    int n_ro;
    int dev_fds[MAX_DEV];
    int n_dev;
    char scratch[4096];
    char rundir[4200];
    int scratch_fd; /* the private scratch tmpfs's root, read after each run; -1 if none */
    unsigned long long base_vm; /* bytes mapped by the zygote itself */
    unsigned long long nruns;
    int dropped; /* the zygote itself runs as the unprivileged run uid */
    int seccomp_base; /* the base filter is on the zygote: children add the small child filter */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, p + got, len - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return got == 0 ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

/* Fill the iovecs completely (EINTR and short reads handled). 0 or -1
 * (error or end of file first). Advances iv in place. */
static int readv_all(int fd, struct iovec *iv, int n) {
    while (n > 0) {
        if (iv->iov_len == 0) { iv++; n--; continue; }
        ssize_t r = readv(fd, iv, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return -1;
        size_t left = (size_t)r;
        while (n > 0 && left >= iv->iov_len) { left -= iv->iov_len; iv++; n--; }
        if (n > 0) { iv->iov_base = (char *)iv->iov_base + left; iv->iov_len -= left; }
    }
    return 0;
}

/* Write every iovec completely. 0 or -1. Advances iv in place. */
static int writev_all(int fd, struct iovec *iv, int n) {
    while (n > 0) {
        if (iv->iov_len == 0) { iv++; n--; continue; }
        ssize_t w = writev(fd, iv, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iv->iov_len) { left -= iv->iov_len; iv++; n--; }
        if (n > 0) { iv->iov_base = (char *)iv->iov_base + left; iv->iov_len -= left; }
    }
    return 0;
}

static int mkdir_p(const char *path, mode_t mode) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) { errno = ENAMETOOLONG; return -1; }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* The first ancestor of `path` (not `path` itself) that others cannot
 * traverse, written to `out`; 0 if none, 1 if found. */
static int blocked_ancestor(const char *path, char *out, size_t cap) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n >= sizeof tmp || n >= cap) return 0;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        struct stat st;
        if (stat(tmp, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH)) {
            memcpy(out, tmp, strlen(tmp) + 1);
            return 1;
        }
        *p = '/';
    }
    return 0;
}

/* In our private mount namespace, cover a directory the run uid cannot
 * traverse (e.g. /root holding the interpreter) with a tmpfs that contains
 * only read-only bind mounts of the allowed paths beneath it. The host's
 * view is untouched, and the rest of that directory disappears for runs. */
static int expose_paths(azr_sbx_zygote *z, const char **paths, char *note, size_t note_cap) {
    char anc[4096], hold[4300];
    int done = 0;
    for (int guard = 0; guard < 4; guard++) {
        int found = 0;
        for (const char **p = paths; p && *p; p++)
            if (blocked_ancestor(*p, anc, sizeof anc)) { found = 1; break; }
        if (!found) return done;
        size_t alen = strlen(anc);
        const char *under[MAX_RO];
        int k = 0;
        for (const char **p = paths; p && *p && k < MAX_RO; p++)
            if (!strncmp(*p, anc, alen) && (*p)[alen] == '/') under[k++] = *p;
        for (int i = 0; i < k; i++) {
            snprintf(hold, sizeof hold, "%s/.hold%d", z->scratch, i);
            if (mkdir(hold, 0700) != 0 && errno != EEXIST) goto fail;
            if (mount(under[i], hold, NULL, MS_BIND | MS_REC, NULL) != 0) goto fail;
        }
        if (mount("tmpfs", anc, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
            goto fail;
        for (int i = 0; i < k; i++) {
            snprintf(hold, sizeof hold, "%s/.hold%d", z->scratch, i);
            if (mkdir_p(under[i], 0755) != 0) goto fail;
            if (mount(hold, under[i], NULL, MS_MOVE, NULL) != 0) goto fail;
            mount(NULL, under[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
            rmdir(hold);
        }
        done = 1;
    }
    return done;
fail:
    snprintf(note, note_cap, "could not expose %.900s to the run uid: %s", anc, strerror(errno));
    return -1;
}

/* path inside the new root under construction */
static int in_root(char *out, size_t cap, const char *root, const char *path) {
    int n = snprintf(out, cap, "%s%s", root, path);
    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* Bind src read-only (and nosuid, nodev unless it is a device) at the same
 * path inside root: a directory, or a file (an empty file is made to
 * mount on). */
static int bind_into(const char *root, const char *src, int dev) {
    char dst[4352];
    struct stat st;
    if (stat(src, &st) != 0) return errno == ENOENT ? 0 : -1; /* a path that went away */
    if (in_root(dst, sizeof dst, root, src) != 0) return -1;
    if (S_ISDIR(st.st_mode)) {
        if (mkdir_p(dst, 0755) != 0) return -1;
    } else {
        char parent[4352];
        snprintf(parent, sizeof parent, "%s", dst);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            if (mkdir_p(parent, 0755) != 0) return -1;
        }
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return -1;
        close(fd);
    }
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) return -1;
    unsigned long fl = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (dev ? 0 : MS_NODEV);
    if (mount(NULL, dst, NULL, fl, NULL) != 0) return -1;
    return 0;
}

/* Make the zygote's root (in its private mount namespace) a tmpfs holding
 * only what runs need: read-only binds of the allowed paths (the
 * interpreter, its libraries, the zoneinfo database) and devices at their
 * own paths, a fresh /proc (own pid namespace) and the scratch tmpfs. A run
 * then cannot even stat a host file outside them (sizes, times, names of
 * the host's other files). Built in a tmpfs mounted inside the scratch,
 * then pivot_root; the old root is detached. 0 on success; -1 (errno set)
 * and the old root kept otherwise. */
static int build_min_root(azr_sbx_zygote *z, int own_proc) {
    char root[4200];
    if (in_root(root, sizeof root, z->scratch, "/.root") != 0) return -1;
    if (mkdir(root, 0755) != 0 && errno != EEXIST) return -1;
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096") != 0)
        goto fail_rmdir;
    for (const char **p = z->cfg.ro_paths; p && *p; p++)
        if (bind_into(root, *p, 0) != 0) goto fail;
    for (const char **p = z->cfg.dev_paths; p && *p; p++)
        if (bind_into(root, *p, 1) != 0) goto fail;
    char dst[4352];
    if (in_root(dst, sizeof dst, root, "/proc") != 0 || mkdir_p(dst, 0555) != 0) goto fail;
    if (own_proc) {
        if (mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) goto fail;
    } else if (mount("/proc", dst, NULL, MS_BIND | MS_REC, NULL) != 0) {
        goto fail;
    }
    /* the scratch itself, without the new root mounted inside it */
    if (in_root(dst, sizeof dst, root, z->scratch) != 0 || mkdir_p(dst, 0755) != 0) goto fail;
    if (mount(z->scratch, dst, NULL, MS_BIND, NULL) != 0) goto fail;
    if (chdir(root) != 0 || syscall(SYS_pivot_root, ".", ".") != 0) goto fail;
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) return -1; /* pivoted: no way back */
    char left[4200];
    if (in_root(left, sizeof left, z->scratch, "/.root") == 0) rmdir(left); /* the old mount point */
    return 0;
fail: {
    int e = errno;
    umount2(root, MNT_DETACH);
    errno = e;
}
fail_rmdir: {
    int e = errno;
    rmdir(root);
    errno = e;
}
    return -1;
}

static unsigned long long read_vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
    return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* fork() copies page-table entries only for mappings that already hold a
 * private (anonymous) page; for read-only file mappings -- the code and
 * constants of libpython and libc -- it copies none, so every child took
 * ~50 page faults re-mapping the same code pages the zygote had mapped.
 * Rewriting one byte of each such mapping with its own value through
 * /proc/self/mem (the debugger's forced copy-on-write, no protection change)
 * gives the mapping an anonymous page, after which fork copies its present
 * entries in bulk. Contents are unchanged. Best effort: any failure leaves
 * the mapping as it was (children then fault as before). */
static void share_file_ptes(void) {
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps) return;
    int mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (mem < 0) {
        fclose(maps);
        return;
    }
    char line[4352];
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo = 0, hi = 0;
        char perms[8] = "";
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &path_at) < 3) continue;
        /* Private, not writable, backed by a file (not [vdso]/[vvar]). */
        if (perms[3] != 'p' || perms[1] == 'w' || perms[2] != 'x' || hi <= lo) continue;
        if (path_at <= 0 || line[path_at] != '/') continue;
        if (!strstr(line + path_at, "libpython") && !strstr(line + path_at, "/libc.so")) continue;
        unsigned char v = *(volatile const unsigned char *)lo;
        if (pwrite(mem, &v, 1, (off_t)lo) != 1) continue;
    }
    close(mem);
    fclose(maps);
}

azr_status azr_sbx_zygote_init(const azr_sbx_zygote_config *cfg, azr_sbx_zygote **out) {
    if (!cfg || !out || !cfg->scratch || cfg->ctl_fd < 0)
        return azr_set_error(AZR_ERR_INVALID, "zygote_init: missing config, scratch or socket");
    azr_sbx_zygote *z = calloc(1, sizeof *z);
    if (!z) return azr_set_error(AZR_ERR_NOMEM, "zygote_init: out of memory");
    z->cfg = *cfg;
    snprintf(z->scratch, sizeof z->scratch, "%s", cfg->scratch);
    z->is_root = geteuid() == 0;
    unsetenv("LD_BIND_NOW"); /* the supervisor's start-up hint, not for runs */
    char note[1024] = "";
    z->base_vm = read_vm_bytes();

    uint32_t L = AZR_SBX_L_SETSID | AZR_SBX_L_RLIMITS | AZR_SBX_L_NO_NEW_PRIVS |
                 AZR_SBX_L_DEADLINE | AZR_SBX_L_PDEATHSIG;
    if (cfg->in_pid_ns) L |= AZR_SBX_L_NS_PID;
    else if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0) L |= AZR_SBX_L_SUBREAPER;
    if (cfg->want_namespaces && z->is_root) {
        if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
            L |= AZR_SBX_L_NS_MOUNT;
        if (unshare(CLONE_NEWNET) == 0) L |= AZR_SBX_L_NS_NET;
        unshare(CLONE_NEWIPC); /* SysV IPC objects die with the zygote (seccomp denies them anyway) */
#ifdef CLONE_NEWTIME
        /* Children see monotonic/boot clocks shifted by a random offset per
         * zygote, so the determinism check also catches code that depends on
         * them (wall-clock time cannot be shifted). */
        if ((L & AZR_SBX_L_NS_PID) && unshare(CLONE_NEWTIME) == 0) {
            unsigned seed = 0;
            for (char **e = environ; e && *e; e++)
                if (!strncmp(*e, "PYTHONHASHSEED=", 15)) seed = (unsigned)strtoul(*e + 15, NULL, 10);
            /* Whole seconds and a sub-second part, both from the seed: two
             * zygotes read different clocks down to the nanosecond digits. */
            unsigned off = 100000u + seed % 10000000u;
            unsigned off_ns = (unsigned)(((unsigned long long)seed * 2654435761ull) % 1000000000ull);
            int tfd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
            char buf[128];
            int n = snprintf(buf, sizeof buf, "monotonic %u %u\nboottime %u %u\n", off, off_ns, off, off_ns);
            if (tfd >= 0) {
                if (write(tfd, buf, (size_t)n) == n) L |= AZR_SBX_L_NS_TIME;
                close(tfd);
            }
        }
#endif
    }
    if (L & AZR_SBX_L_NS_MOUNT) {
        if (L & AZR_SBX_L_NS_PID)
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        char opts[160];
        snprintf(opts, sizeof opts, "mode=0755,size=256m,nr_inodes=65536,uid=%u,gid=%u",
                 z->is_root ? (unsigned)cfg->run_uid : (unsigned)geteuid(),
                 z->is_root ? (unsigned)cfg->run_gid : (unsigned)getegid());
        if (mount("tmpfs", z->scratch, "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0)
            L |= AZR_SBX_L_SCRATCH_TMPFS;
    }
    if ((L & AZR_SBX_L_SCRATCH_TMPFS) && z->is_root) {
        if (build_min_root(z, (L & AZR_SBX_L_NS_PID) != 0) == 0)
            L |= AZR_SBX_L_MIN_ROOT;
        else
            snprintf(note, sizeof note, "could not build the minimal root: %s", strerror(errno));
    }
    if (z->is_root) {
        L |= AZR_SBX_L_UID | AZR_SBX_L_NO_CAPS;
        if (L & AZR_SBX_L_MIN_ROOT) {
            /* every directory of the new root is open to the run uid */
        } else if (L & AZR_SBX_L_SCRATCH_TMPFS) {
            if (expose_paths(z, cfg->ro_paths, note, sizeof note) < 0) L &= ~AZR_SBX_L_UID;
        } else {
            /* Without a private mount namespace we cannot make the interpreter
             * reachable for another uid if it lives under a closed directory. */
            char anc[4096];
            for (const char **p = cfg->ro_paths; p && *p; p++)
                if (blocked_ancestor(*p, anc, sizeof anc)) {
                    L &= ~AZR_SBX_L_UID;
                    snprintf(note, sizeof note, "%.900s is closed to other uids; runs keep uid 0", anc);
                    break;
                }
        }
    }
    for (const char **p = cfg->ro_paths; p && *p && z->n_ro < MAX_RO; p++) {
        int fd = open(*p, O_PATH | O_CLOEXEC);
        if (fd >= 0) z->ro_fds[z->n_ro++] = fd;
    }
    for (const char **p = cfg->dev_paths; p && *p && z->n_dev < MAX_DEV; p++) {
        int fd = open(*p, O_PATH | O_CLOEXEC);
        if (fd >= 0) z->dev_fds[z->n_dev++] = fd;
    }
    z->landlock_abi = azr_sbx_landlock_abi();
    if (z->landlock_abi >= 1) L |= AZR_SBX_L_LANDLOCK;
    if (z->landlock_abi >= 4) L |= AZR_SBX_L_LANDLOCK_NET;
    if (z->landlock_abi >= 6) L |= AZR_SBX_L_LANDLOCK_SCOPE;
    if (azr_sbx_seccomp_supported()) L |= AZR_SBX_L_SECCOMP;
    {
        int extra = 0;
        for (char **e = environ; e && *e; e++)
            if (strncmp(*e, "PYTHONHASHSEED=", 15) && strncmp(*e, "LC_CTYPE=", 9)) extra++;
        if (!extra) L |= AZR_SBX_L_EMPTY_ENV;
    }
    z->layers = L;

    /* Before the uid change below: a non-dumpable process cannot open its own
     * /proc/self/mem (it becomes root's). Every library is loaded by now. */
    share_file_ptes();

    /* Drop the zygote itself to the run uid once its privileged set-up is
     * done: children then need no credential change, and the fork server
     * holds no root either. Non-dumpable, so a same-uid child could not
     * ptrace it even without seccomp. */
    if (L & AZR_SBX_L_UID) {
        gid_t g = cfg->run_gid;
        int ok = (L & AZR_SBX_L_SCRATCH_TMPFS) || chown(z->scratch, cfg->run_uid, cfg->run_gid) == 0;
        ok = ok && setgroups(1, &g) == 0 && setresgid(g, g, g) == 0 &&
             setresuid(cfg->run_uid, cfg->run_uid, cfg->run_uid) == 0 && geteuid() != 0;
        if (ok) {
            z->dropped = 1;
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* cleared by the uid change */
            prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        } else {
            L &= ~AZR_SBX_L_UID;
            snprintf(note, sizeof note, "could not switch to the run uid: %s", strerror(errno));
        }
    }
    /* The seccomp policy's large part goes on the zygote itself, once, now
     * that its privileged set-up is over; each child then adds only the small
     * filter that takes back what a fork server needs (see layers.h). If the
     * base cannot be installed, children install the full filter. */
    if ((L & AZR_SBX_L_SECCOMP) && azr_sbx_seccomp_install_base(getpid()) == 0) z->seccomp_base = 1;
    z->layers = L;
    uint32_t hello[3] = {AZR_SBX_HELLO_MAGIC, L, (uint32_t)strlen(note)};
    if (write_all(cfg->ctl_fd, hello, sizeof hello) != 0 ||
        write_all(cfg->ctl_fd, note, hello[2]) != 0) {
        free(z);
        return azr_set_error(AZR_ERR_SYSTEM, "zygote_init: cannot write hello: %s", strerror(errno));
    }
    *out = z;
    return AZR_OK;
}

uint32_t azr_sbx_zygote_layers(const azr_sbx_zygote *z) { return z ? z->layers : 0; }

int azr_sbx_child_reply(uint32_t status, const void *data, size_t len) {
    if (len > 0xFFFFFFF0u) return -1;
    uint32_t h[3] = {AZR_SBX_FRAME_MAGIC, status, (uint32_t)len};
    if (write_all(AZR_SBX_RESULT_FD, h, sizeof h) != 0) return -1;
    if (len && write_all(AZR_SBX_RESULT_FD, data, len) != 0) return -1;
    return 0;
}

/* Fail closed: report which layer could not be installed, run nothing. */
static void child_fail(const char *layer) {
    char msg[300];
    int n = snprintf(msg, sizeof msg, "sandbox layer '%s' could not be installed (%s); nothing was run",
                     layer, strerror(errno));
    if (n < 0) n = 0;
    azr_sbx_child_reply(AZR_SBX_ERROR, msg, (size_t)n);
    _exit(121);
}

static void child_setup(azr_sbx_zygote *z, const azr_sbx_req_hdr *h, int out_w, int res_w,
                        pid_t zygote_pid) {
    const uint32_t L = z->layers;
    /* Descriptors first, so a failure can still be reported. */
    if (res_w != AZR_SBX_RESULT_FD) {
        if (dup2(res_w, AZR_SBX_RESULT_FD) < 0) _exit(122);
        close(res_w);
    } else {
        fcntl(res_w, F_SETFD, 0);
    }
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0) child_fail("stdin");
    if (nul != 0) close(nul);
    if (dup2(out_w, 1) < 0 || dup2(out_w, 2) < 0) child_fail("stdout");
    if (out_w > 2 && out_w != AZR_SBX_RESULT_FD) close(out_w);
    /* Its own process group, so the deadline kill reaches every thread and
     * anything left of the run. Not a new session: the zygote's session has
     * no controlling terminal and a run that is not a session leader can
     * never acquire one, and setsid would also create (and at exit destroy)
     * a scheduler autogroup per run, ~2% of all the CPU a trivial run costs. */
    if (setpgid(0, 0) < 0) child_fail("process group");
    if (chdir(z->rundir) != 0) child_fail("scratch");
    int rfd = -1;
    if (L & AZR_SBX_L_LANDLOCK) {
        int sfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (sfd < 0) child_fail("landlock");
        rfd = azr_sbx_landlock_build(z->landlock_abi, z->ro_fds, z->n_ro, z->dev_fds, z->n_dev, sfd);
        if (rfd < 0) child_fail("landlock");
        close(sfd);
        if (rfd != 4) {
            if (dup2(rfd, 4) < 0) child_fail("landlock");
            close(rfd);
            rfd = 4;
        }
        if (syscall(__NR_close_range, 5u, ~0u, 0u) != 0) child_fail("close fds");
    } else if (syscall(__NR_close_range, 4u, ~0u, 0u) != 0) {
        child_fail("close fds");
    }
    /* rlimits */
    {
        double t = h->timeout_ms / 1000.0;
        rlim_t cpu = (rlim_t)ceil(t) + 1;
        struct rlimit r;
        r.rlim_cur = cpu; r.rlim_max = cpu + 1;
        if (setrlimit(RLIMIT_CPU, &r) != 0) child_fail("rlimit cpu");
        unsigned long long as = z->base_vm + (64ull << 20) + ((unsigned long long)h->memory_mb << 20);
        r.rlim_cur = r.rlim_max = (rlim_t)as;
        if (setrlimit(RLIMIT_AS, &r) != 0) child_fail("rlimit as");
        r.rlim_cur = r.rlim_max = (rlim_t)h->fsize_mb << 20;
        if (setrlimit(RLIMIT_FSIZE, &r) != 0) child_fail("rlimit fsize");
        r.rlim_cur = r.rlim_max = 64;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) child_fail("rlimit nofile");
        r.rlim_cur = r.rlim_max = 0;
        if (setrlimit(RLIMIT_CORE, &r) != 0) child_fail("rlimit core");
        if (setrlimit(RLIMIT_MEMLOCK, &r) != 0) child_fail("rlimit memlock");
        if (setrlimit(RLIMIT_MSGQUEUE, &r) != 0) child_fail("rlimit msgqueue");
        r.rlim_cur = r.rlim_max = 0; /* no raising of the scheduling priority */
        if (setrlimit(RLIMIT_NICE, &r) != 0) child_fail("rlimit nice");
        if (L & AZR_SBX_L_UID) {
            r.rlim_cur = r.rlim_max = z->cfg.nproc ? z->cfg.nproc : 256;
            if (setrlimit(RLIMIT_NPROC, &r) != 0) child_fail("rlimit nproc");
        }
        /* Every other limit: hard = soft, so the run (which may set its own
         * limits, to lower them) cannot raise any soft limit either. */
        const int rest[] = {RLIMIT_STACK, RLIMIT_DATA, RLIMIT_RSS, RLIMIT_NPROC, RLIMIT_LOCKS,
                            RLIMIT_SIGPENDING, RLIMIT_RTPRIO, RLIMIT_RTTIME};
        for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
            if (getrlimit(rest[i], &r) != 0) child_fail("rlimit get");
            if (r.rlim_max != r.rlim_cur) {
                r.rlim_max = r.rlim_cur;
                if (setrlimit(rest[i], &r) != 0) child_fail("rlimit clamp");
            }
        }
    }
    if ((L & AZR_SBX_L_UID) && !z->dropped) {
        gid_t g = z->cfg.run_gid;
        if (setgroups(1, &g) != 0) child_fail("uid");
        if (setresgid(g, g, g) != 0) child_fail("uid");
        if (setresuid(z->cfg.run_uid, z->cfg.run_uid, z->cfg.run_uid) != 0) child_fail("uid");
    }
    if ((L & AZR_SBX_L_UID) && (geteuid() == 0 || getuid() == 0)) { errno = EPERM; child_fail("uid"); }
    if ((L & AZR_SBX_L_NO_CAPS) && geteuid() == 0) {
        /* Still uid 0 (no run uid possible here): at least hold no capability. */
        struct __user_cap_header_struct hd = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        if (syscall(SYS_capset, &hd, data) != 0) child_fail("capabilities");
    }
    /* After the uid change, which clears it. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail("pdeathsig");
    if (getppid() != zygote_pid) _exit(123);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail("no_new_privs");
    if (L & AZR_SBX_L_LANDLOCK) {
        if (azr_sbx_landlock_restrict(rfd) != 0) child_fail("landlock");
        close(rfd);
    }
    if (L & AZR_SBX_L_SECCOMP) {
        pid_t me = getpid();
        if ((z->seccomp_base ? azr_sbx_seccomp_install_child(me) : azr_sbx_seccomp_install(me)) != 0)
            child_fail("seccomp");
    }
}

static const char *sig_name(int s) {
    switch (s) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGSYS: return "SIGSYS";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGTERM: return "SIGTERM";
    case SIGPIPE: return "SIGPIPE";
    default: return "signal";
    }
}

/* Clear, then free. Every later child inherits the zygote's heap, freed
 * chunks included, so no byte of a request (a hidden gold output, test
 * code), of a run's output or of its result may stay there for a later run
 * to read. explicit_bzero: a clear the compiler may not drop as a store to
 * memory about to be freed. NULL is a no-op. */
static void wipe_free(void *p, size_t n) {
    if (!p) return;
    explicit_bzero(p, n);
    free(p);
}

typedef struct {
    uint8_t *buf;
    size_t len, cap, limit;
    int overflow, eof;
} sink;

static void sink_free(sink *s) {
    wipe_free(s->buf, s->cap);
    s->buf = NULL;
    s->len = s->cap = 0;
}

/* Read what is available from fd into s (keeping at most s->limit bytes).
 * Sets eof on end of file; overflow when more than limit arrived. */
static void sink_read(int fd, sink *s) {
    for (;;) {
        if (s->len == s->cap) {
            size_t nc = s->cap ? s->cap * 2 : 4096;
            if (nc > s->limit + 1) nc = s->limit + 1;
            if (nc <= s->cap) { s->overflow = 1; return; }
            /* Not realloc: it would free the old block uncleared. */
            uint8_t *nb = malloc(nc);
            if (!nb) { s->overflow = 1; return; }
            if (s->len) memcpy(nb, s->buf, s->len);
            wipe_free(s->buf, s->cap);
            s->buf = nb;
            s->cap = nc;
        }
        ssize_t r = read(fd, s->buf + s->len, s->cap - s->len);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) s->eof = 1;
            return;
        }
        if (r == 0) { s->eof = 1; return; }
        s->len += (size_t)r;
        if (s->len > s->limit) { s->overflow = 1; s->len = s->limit; return; }
    }
}

/* 1 if the result sink holds a complete frame. */
static int frame_complete(const sink *s) {
    if (s->len < 12) return 0;
    uint32_t h[3];
    memcpy(h, s->buf, 12);
    return s->len >= 12 + (size_t)h[2];
}

static void kill_child(pid_t pid) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

/* Each run gets a fresh directory, removed (without following symlinks)
 * after the run; inside the zygote's private tmpfs when there is one. */

/* 1 if the directory open as fd holds nothing but "." and "..": one
 * getdents64 from its start (a file system returns every entry that fits,
 * and this buffer holds many). */
static int dir_is_empty(int fd) {
    char buf[1024] __attribute__((aligned(8)));
    if (lseek(fd, 0, SEEK_SET) != 0) return 0;
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) return 0;
    for (long off = 0; off < n;) {
        /* struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name */
        unsigned short reclen;
        memcpy(&reclen, buf + off + 16, sizeof reclen);
        const char *name = buf + off + 19;
        if (reclen == 0) return 0;
        if (!(name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))) return 0;
        off += reclen;
    }
    return 1;
}

/* 1 if nothing of the last run is left. A private tmpfs must be empty (a
 * run without Landlock could write beside its directory; with the run dead,
 * anything still there is reachable from the root). A shared scratch
 * directory (other zygotes' runs live there too) can only be checked for
 * the run's own directory. (Counting the tmpfs's inodes would not do: the
 * kernel frees a run's directory inode a little after the run, when the
 * run's Landlock domain goes.) */
static int scratch_clean(const azr_sbx_zygote *z) {
    if (z->scratch_fd >= 0) return dir_is_empty(z->scratch_fd);
    struct stat st;
    return lstat(z->rundir, &st) != 0 && errno == ENOENT;
}

/* Remove what the last run left and check the scratch is clean. The usual
 * run left an empty directory: one rmdir, and one lseek and one getdents64
 * of the tmpfs root. Anything else
 * (files, directories made unreadable or unwritable, trees of any depth,
 * links, fifos, sockets, names beside the run's directory) is removed by a
 * walk that restores permissions and never follows links. 0 if clean; -1
 * if not, and then this zygote must not serve again (a full scratch would
 * make every later run fail with "cannot prepare the run"). */
static int restore_scratch(azr_sbx_zygote *z) {
    if (rmdir(z->rundir) == 0 && (z->scratch_fd < 0 || dir_is_empty(z->scratch_fd))) return 0;
    if (z->scratch_fd >= 0) azr_sbx_empty_dir(z->scratch);
    else azr_sbx_rmtree(z->rundir);
    return scratch_clean(z) ? 0 : -1;
}
static int prepare_rundir(azr_sbx_zygote *z, const azr_sbx_req_hdr *h) {
    (void)h;
    /* Zygotes without a private tmpfs share the scratch directory: the pid
     * keeps their names apart. */
    snprintf(z->rundir, sizeof z->rundir, "%s/run-%d-%llu", z->scratch, (int)getpid(), z->nruns);
    if (mkdir(z->rundir, 0700) != 0) return -1;
    if ((z->layers & AZR_SBX_L_UID) && !z->dropped && chown(z->rundir, z->cfg.run_uid, z->cfg.run_gid) != 0) {
        rmdir(z->rundir);
        return -1;
    }
    return 0;
}

static int reply(azr_sbx_zygote *z, azr_sbx_rep_hdr *rh, const void *payload, const void *out,
                 const char *msg) {
    rh->magic = AZR_SBX_REP_MAGIC;
    rh->msg_len = (uint32_t)strlen(msg);
    /* One system call for the whole reply in the usual case. */
    struct iovec iv[4] = {{rh, sizeof *rh}, {(void *)payload, rh->payload_len}, {(void *)out, rh->out_len},
                          {(void *)msg, rh->msg_len}};
    return writev_all(z->cfg.ctl_fd, iv, 4);
}

azr_status azr_sbx_zygote_serve(azr_sbx_zygote *z, azr_sbx_child_request *req, int *is_child) {
    if (!z || !req || !is_child) return azr_set_error(AZR_ERR_INVALID, "zygote_serve: NULL argument");
    *is_child = 0;
    const pid_t self = getpid();
#ifdef __GLIBC__
    /* Give free heap pages back before the first fork: every page still
     * mapped is one more page-table entry copied at each fork. */
    malloc_trim(0);
#endif
    /* Closed in every child (close_range in child_setup). */
    z->scratch_fd = -1;
    if (z->layers & AZR_SBX_L_SCRATCH_TMPFS)
        z->scratch_fd = open(z->scratch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    for (;;) {
        azr_sbx_req_hdr h;
        int r = read_all(z->cfg.ctl_fd, &h, sizeof h);
        if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return AZR_OK; /* supervisor closed (or reset the socket): clean end */
        if (r < 0 || h.magic != AZR_SBX_REQ_MAGIC || h.a_len > AZR_SBX_MAX_FIELD ||
            h.b_len > AZR_SBX_MAX_FIELD || h.c_len > AZR_SBX_MAX_FIELD)
            return azr_set_error(AZR_ERR_FORMAT, "zygote_serve: bad request from supervisor");
        /* a, b, c in one buffer (one allocation, one read), each NUL-ended. */
        const size_t body = (size_t)h.a_len + h.b_len + h.c_len;
        char *a = malloc(body + 3);
        if (!a) return azr_set_error(AZR_ERR_NOMEM, "zygote_serve: out of memory");
        char *b = a + h.a_len + 1, *c = b + h.b_len + 1;
        struct iovec iv[3] = {{a, h.a_len}, {b, h.b_len}, {c, h.c_len}};
        if (body && readv_all(z->cfg.ctl_fd, iv, 3) != 0) {
            wipe_free(a, body + 3);
            return azr_set_error(AZR_ERR_FORMAT, "zygote_serve: truncated request");
        }
        a[h.a_len] = b[h.b_len] = c[h.c_len] = '\0';
        z->nruns++;
        if (h.timeout_ms == 0) h.timeout_ms = 1;
        if (h.fsize_mb == 0) h.fsize_mb = 1;

        azr_sbx_rep_hdr rh;
        memset(&rh, 0, sizeof rh);
        rh.exit_code = -1;
        char msg[512] = "";
        sink out = {.limit = h.output_cap}, res = {.limit = (size_t)h.result_cap + 12};
        int out_p[2] = {-1, -1}, res_p[2] = {-1, -1};
        int have_dir = prepare_rundir(z, &h) == 0;
        if (!have_dir && restore_scratch(z) == 0) have_dir = prepare_rundir(z, &h) == 0;
        if (!have_dir || pipe2(out_p, O_CLOEXEC) != 0 || pipe2(res_p, O_CLOEXEC) != 0) {
            rh.status = AZR_SBX_ERROR;
            snprintf(msg, sizeof msg, "sandbox: cannot prepare the run (%s)", strerror(errno));
            if (out_p[0] >= 0) { close(out_p[0]); close(out_p[1]); }
            int clean = restore_scratch(z) == 0;
            if (!clean) rh.flags |= AZR_SBX_F_RETIRED;
            wipe_free(a, body + 3);
            if (reply(z, &rh, NULL, NULL, msg) != 0 || !clean) return AZR_OK;
            continue;
        }
        double t0 = now_s();
        if (z->cfg.before_fork) z->cfg.before_fork();
        pid_t pid = fork();
        if (pid == 0) {
            if (z->cfg.after_fork_child) z->cfg.after_fork_child();
            close(out_p[0]);
            close(res_p[0]);
            child_setup(z, &h, out_p[1], res_p[1], self);
            req->mode = h.mode;
            req->a = a; req->a_len = h.a_len;
            req->b = b; req->b_len = h.b_len;
            req->c = c; req->c_len = h.c_len;
            req->result_cap = h.result_cap;
            *is_child = 1;
            return AZR_OK;
        }
        if (z->cfg.after_fork_parent) z->cfg.after_fork_parent();
        close(out_p[1]);
        close(res_p[1]);
        if (pid < 0) {
            wipe_free(a, body + 3);
            rh.status = AZR_SBX_ERROR;
            snprintf(msg, sizeof msg, "sandbox: fork failed (%s)", strerror(errno));
            close(out_p[0]); close(res_p[0]);
            int clean = restore_scratch(z) == 0;
            if (!clean) rh.flags |= AZR_SBX_F_RETIRED;
            if (reply(z, &rh, NULL, NULL, msg) != 0 || !clean) return AZR_OK;
            continue;
        }
        fcntl(out_p[0], F_SETFL, O_NONBLOCK);
        fcntl(res_p[0], F_SETFL, O_NONBLOCK);
        int pidfd = (int)syscall(__NR_pidfd_open, pid, 0);
        const double deadline = t0 + h.timeout_ms / 1000.0;
        int exited = 0, killed = 0, timed_out = 0, status = 0;
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        for (;;) {
            if (!exited && pidfd < 0) {
                pid_t w = wait4(pid, &status, WNOHANG, &ru);
                if (w == pid) exited = 1;
            }
            if (exited && out.eof && res.eof) break;
            struct pollfd pf[3];
            int np = 0, i_pid = -1, i_out = -1, i_res = -1;
            if (!exited && pidfd >= 0) { i_pid = np; pf[np++] = (struct pollfd){pidfd, POLLIN, 0}; }
            if (!out.eof) { i_out = np; pf[np++] = (struct pollfd){out_p[0], POLLIN, 0}; }
            if (!res.eof) { i_res = np; pf[np++] = (struct pollfd){res_p[0], POLLIN, 0}; }
            double now = now_s();
            int wait_ms;
            if (exited) wait_ms = 0;              /* only draining is left */
            else if (killed) wait_ms = 50;
            else wait_ms = (int)ceil((deadline - now) * 1000.0);
            if (wait_ms < 0) wait_ms = 0;
            if (pidfd < 0 && wait_ms > 5) wait_ms = 5;
            int pr = poll(pf, (nfds_t)np, wait_ms);
            if (pr < 0 && errno != EINTR) break;
            if (pr > 0) {
                if (i_out >= 0 && pf[i_out].revents) sink_read(out_p[0], &out);
                if (i_res >= 0 && pf[i_res].revents) sink_read(res_p[0], &res);
                if (i_pid >= 0 && (pf[i_pid].revents & POLLIN)) {
                    if (wait4(pid, &status, 0, &ru) == pid) exited = 1;
                }
            }
            if (exited) {
                /* All writers are gone: drain to end of file. */
                if (!out.eof) sink_read(out_p[0], &out);
                if (!res.eof) sink_read(res_p[0], &res);
                if (out.overflow) out.eof = 1;
                if (res.overflow) res.eof = 1;
                continue;
            }
            if (!killed && (out.overflow || res.overflow || frame_complete(&res))) {
                kill_child(pid);
                killed = 1;
            }
            if (!killed && now_s() >= deadline) {
                timed_out = 1;
                kill_child(pid);
                killed = 1;
            }
        }
        if (!exited) { kill_child(pid); wait4(pid, &status, 0, &ru); }
        if (pidfd >= 0) close(pidfd);
        close(out_p[0]);
        close(res_p[0]);
        /* The run is dead and reaped: nothing can add to the scratch now. */
        const int clean = restore_scratch(z) == 0;
        if (!clean) rh.flags |= AZR_SBX_F_RETIRED;
        /* Freed only now: while the child lived, writing the allocator's
         * bookkeeping (and the clear) would have copied pages it still
         * shared. */
        wipe_free(a, body + 3);
        rh.wall_time = now_s() - t0;
        rh.cpu_time = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                      (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
        if (WIFEXITED(status)) rh.exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) rh.term_signal = WTERMSIG(status);

        const uint8_t *payload = NULL;
        int complete = frame_complete(&res);
        uint32_t fh[3] = {0, 0, 0};
        if (complete) memcpy(fh, res.buf, 12);
        if (complete && fh[0] != AZR_SBX_FRAME_MAGIC) complete = 0;
        if (out.overflow) {
            rh.status = AZR_SBX_TRUNCATED;
            rh.flags |= AZR_SBX_F_OUT_OVERFLOW;
            snprintf(msg, sizeof msg, "printed output exceeded %u bytes", h.output_cap);
        } else if (res.overflow) {
            rh.status = AZR_SBX_TRUNCATED;
            rh.flags |= AZR_SBX_F_RESULT_OVERFLOW;
            snprintf(msg, sizeof msg, "result exceeded %u bytes", h.result_cap);
        } else if (complete) {
            rh.status = fh[1] < AZR_SBX_NSTATUS ? fh[1] : AZR_SBX_ERROR;
            payload = res.buf + 12;
            rh.payload_len = fh[2];
        } else if (timed_out) {
            rh.status = AZR_SBX_TIMEOUT;
            rh.flags |= AZR_SBX_F_KILLED_DEADLINE;
            snprintf(msg, sizeof msg, "wall-clock deadline of %.3f s exceeded", h.timeout_ms / 1000.0);
        } else {
            rh.flags |= AZR_SBX_F_NO_RESULT;
            int s = rh.term_signal;
            double cpu_hard = ceil(h.timeout_ms / 1000.0) + 2.0;
            if (s == SIGSYS) {
                rh.status = AZR_SBX_DENIED;
                snprintf(msg, sizeof msg, "a forbidden system call was blocked (seccomp); the run was stopped");
            } else if (s == SIGXCPU || (s == SIGKILL && rh.cpu_time >= cpu_hard - 0.05)) {
                rh.status = AZR_SBX_TIMEOUT;
                snprintf(msg, sizeof msg, "CPU time limit exceeded");
            } else if (s) {
                rh.status = AZR_SBX_ERROR;
                snprintf(msg, sizeof msg, "the run died of %s (%d)", sig_name(s), s);
            } else {
                rh.status = AZR_SBX_ERROR;
                snprintf(msg, sizeof msg, "the run exited with code %d without a result", rh.exit_code);
            }
        }
        rh.out_len = (uint32_t)out.len;
        int rc = reply(z, &rh, payload, out.buf, msg);
        sink_free(&out);
        sink_free(&res);
        if (rc != 0) return AZR_OK; /* supervisor gone */
        /* Retire: the supervisor starts a fresh zygote in our place (and
         * our private tmpfs goes with our mount namespace). */
        if (!clean) return AZR_OK;
    }
}
