/*
 * sandbox.h -- azr's executor for model-written Python: a pool of pre-warmed
 * Python "zygotes" (one interpreter each, own PYTHONHASHSEED, empty
 * environment), each forking one isolated child per run.
 *
 * Two halves share this header:
 *   - the supervisor (pool.c), linked into the trainer process: spawns the
 *     zygotes (in fresh pid namespaces where permitted), dispatches a batch of
 *     requests across them with poll(), replaces a zygote that dies and
 *     re-queues its request, and never trusts what comes back beyond the
 *     framing checked here;
 *   - the fork server (zygote.c), linked into the zygote's own small extension
 *     module: per run it forks a child, installs every isolation layer in the
 *     child (fail closed), hands the request to the Python driver in the child,
 *     and supervises the child from outside (pidfd + wall-clock deadline,
 *     SIGKILL, bounded reads of stdout/stderr and of the result pipe).
 *
 * Must not: run user code in the supervisor or the zygote, decode results as
 * anything but bytes (decoding to Python values is the binding's job), print,
 * abort or exit in library code (the fork-server child is the exception: it
 * ends with _exit after reporting).
 */
#ifndef AZR_SANDBOX_H
#define AZR_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../core/azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Run statuses, shared by the child frame, the zygote reply and Python. */
enum {
    AZR_SBX_OK = 0,
    AZR_SBX_ERROR = 1,
    AZR_SBX_TIMEOUT = 2,
    AZR_SBX_MEMORY = 3,
    AZR_SBX_DENIED = 4,
    AZR_SBX_TRUNCATED = 5,
    AZR_SBX_SYNTAX = 6,
    AZR_SBX_NSTATUS = 7
};

/* What the child is asked to do (interpreted by the Python driver). */
enum {
    AZR_SBX_MODE_RUN = 0,      /* a = program, b = argument-list source: f(<b>)          */
    AZR_SBX_MODE_VALIDATE = 1, /* RUN plus syntax and the deny-list (c = deny-list json) */
    AZR_SBX_MODE_PARSE = 2,    /* a = text of a literal value: parse it, return it      */
    AZR_SBX_MODE_TESTS = 3,    /* a = program, b = test code, c = entry point or ""     */
    AZR_SBX_MODE_PROBE = 4     /* install the layers, run nothing, report ok            */
};

/* Isolation layers (bit mask reported by each zygote). */
enum {
    AZR_SBX_L_SETSID = 1u << 0,
    AZR_SBX_L_RLIMITS = 1u << 1,
    AZR_SBX_L_UID = 1u << 2,
    AZR_SBX_L_NO_NEW_PRIVS = 1u << 3,
    AZR_SBX_L_SECCOMP = 1u << 4,
    AZR_SBX_L_LANDLOCK = 1u << 5,
    AZR_SBX_L_NS_PID = 1u << 6,
    AZR_SBX_L_NS_MOUNT = 1u << 7,
    AZR_SBX_L_NS_NET = 1u << 8,
    AZR_SBX_L_SCRATCH_TMPFS = 1u << 9,
    AZR_SBX_L_EMPTY_ENV = 1u << 10,
    AZR_SBX_L_DEADLINE = 1u << 11,
    AZR_SBX_L_SUBREAPER = 1u << 12,
    AZR_SBX_L_LANDLOCK_NET = 1u << 13,
    AZR_SBX_L_LANDLOCK_SCOPE = 1u << 14,
    AZR_SBX_L_PDEATHSIG = 1u << 15,
    AZR_SBX_L_NO_CAPS = 1u << 16,
    AZR_SBX_L_NS_TIME = 1u << 17,
    AZR_SBX_L_MIN_ROOT = 1u << 18
};

/* Wire format, host byte order (both ends are on the same machine).
 * Child -> zygote, on the private result pipe (fd 3 in the child):
 *   u32 magic AZR_SBX_FRAME_MAGIC, u32 status, u32 len, then len bytes
 *   (the encoded value when status is OK, else a UTF-8 message). */
#define AZR_SBX_FRAME_MAGIC 0x5A52C0DEu
#define AZR_SBX_RESULT_FD 3

/* Supervisor -> zygote request header, followed by a, b, c bytes. */
typedef struct {
    uint32_t magic; /* AZR_SBX_REQ_MAGIC */
    uint32_t mode;
    uint32_t timeout_ms;
    uint32_t memory_mb;
    uint32_t output_cap;  /* bytes of stdout+stderr kept; more = truncated */
    uint32_t result_cap;  /* bytes of encoded result accepted; more = truncated */
    uint32_t fsize_mb;    /* largest file the run may write */
    uint32_t a_len, b_len, c_len;
} azr_sbx_req_hdr;
#define AZR_SBX_REQ_MAGIC 0x5A52A001u

/* Zygote -> supervisor reply header, followed by payload and out bytes. */
typedef struct {
    uint32_t magic; /* AZR_SBX_REP_MAGIC */
    uint32_t status;
    int32_t exit_code;   /* -1 unless the child exited */
    int32_t term_signal; /* 0 unless the child died of a signal */
    uint32_t flags;      /* AZR_SBX_F_* */
    uint32_t payload_len;
    uint32_t out_len;
    uint32_t msg_len;
    double cpu_time, wall_time;
} azr_sbx_rep_hdr;
#define AZR_SBX_REP_MAGIC 0x5A52B002u
#define AZR_SBX_F_KILLED_DEADLINE 1u
#define AZR_SBX_F_OUT_OVERFLOW 2u
#define AZR_SBX_F_RESULT_OVERFLOW 4u
#define AZR_SBX_F_NO_RESULT 8u
#define AZR_SBX_F_RETIRED 16u /* the zygote could not clean its scratch and exits after this
                               * reply; the supervisor replaces it (its result still stands) */

/* Zygote -> supervisor hello after start-up: u32 magic, u32 layers, u32
 * msg_len, then msg (start-up problems, "" if none). */
#define AZR_SBX_HELLO_MAGIC 0x5A52B001u

/* Hard bounds on sizes the supervisor accepts, whatever a zygote claims. */
#define AZR_SBX_MAX_FIELD (64u << 20)
#define AZR_SBX_MAX_REPLY (256u << 20)

/* ------------------------------------------------------------------ */
/* Supervisor (trainer side).                                          */

typedef struct azr_sbx_pool azr_sbx_pool;

typedef struct {
    const char *python;      /* interpreter to exec for each zygote (required)      */
    const char *driver;      /* path of the zygote's Python driver (required)       */
    const char *ext_path;    /* path of the zygote extension module (required)      */
    const char *scratch;     /* existing empty directory for per-run scratch        */
    const char *config_json; /* passed to the driver verbatim (argv), may be NULL   */
    int workers;             /* >= 2 (the determinism check needs two hash seeds)   */
    int use_namespaces;      /* try a pid namespace per zygote (and mount/net)      */
    int startup_timeout_ms;  /* how long to wait for a zygote's hello               */
} azr_sbx_pool_config;

typedef struct {
    uint32_t mode, timeout_ms, memory_mb, output_cap, result_cap, fsize_mb;
    int64_t pair; /* -1, or the index of its group's first request (which names itself):
                   * every request of a group runs in a zygote whose hash seed no other
                   * request of the group ran with (the determinism check) */
    const char *a; uint32_t a_len;
    const char *b; uint32_t b_len;
    const char *c; uint32_t c_len;
} azr_sbx_request;

typedef struct {
    uint32_t status;
    int32_t exit_code, term_signal;
    uint32_t flags;
    double cpu_time, wall_time;
    uint8_t *payload; uint32_t payload_len; /* malloc'd; encoded value or message */
    uint8_t *out; uint32_t out_len;         /* malloc'd; captured stdout+stderr   */
    char msg[512];                          /* the zygote's / supervisor's note   */
    uint64_t zygote_id;                     /* which zygote generation ran it     */
    uint32_t hash_seed;                     /* that zygote's PYTHONHASHSEED       */
} azr_sbx_result;

/* Start `cfg->workers` zygotes and wait for their hellos. On success *out
 * owns the processes (free with azr_sbx_pool_free). NULL cfg/out or missing
 * paths give AZR_ERR_INVALID; a zygote that fails to start gives
 * AZR_ERR_SYSTEM with its message; nothing is left running on failure. */
azr_status azr_sbx_pool_new(const azr_sbx_pool_config *cfg, azr_sbx_pool **out);

/* Kill and reap every zygote (and so every run), close every descriptor.
 * NULL is a no-op. */
void azr_sbx_pool_free(azr_sbx_pool *p);

/* The layer mask every live zygote reported (AND over the pool). */
uint32_t azr_sbx_pool_layers(const azr_sbx_pool *p);

/* Number of zygotes and their host pids (for tests); returns the count. */
int azr_sbx_pool_pids(const azr_sbx_pool *p, pid_t *pids, int cap);

/* Total zygotes started so far (restarts included). */
uint64_t azr_sbx_pool_spawned(const azr_sbx_pool *p);

/* Callback polled about every 100 ms during a batch; non-zero cancels it. */
typedef int (*azr_sbx_cancel_fn)(void *ctx);

/* Run n requests across the pool; results[i] answers reqs[i]. Blocks until
 * all are done (n == 0 returns at once). A group (see `pair`) larger than the
 * pool, or a member naming a request that does not lead a group, is
 * AZR_ERR_INVALID. A zygote that dies is replaced and
 * its request re-queued (twice at most, then reported as an error).
 * Returns AZR_ERR_INTERRUPTED when `cancel` asks (finished results stay
 * filled, the rest get status error and msg "cancelled"); AZR_ERR_SYSTEM if
 * no zygote can be started. Free each result with azr_sbx_result_clear. */
azr_status azr_sbx_pool_run(azr_sbx_pool *p, const azr_sbx_request *reqs, size_t n,
                            azr_sbx_result *results, azr_sbx_cancel_fn cancel, void *ctx);

/* Replace the `count` idle zygotes started longest ago with new ones, with
 * fresh hash seeds, without waiting for them: each is started now and its
 * hello read at its next use, so the determinism check does not see the
 * same seeds for a pool's whole life. Returns how many were replaced (0 for
 * NULL or in a forked copy of the owner). */
int azr_sbx_pool_reseed(azr_sbx_pool *p, int count);

/* Free a result's buffers (NULL-safe) and zero it. */
void azr_sbx_result_clear(azr_sbx_result *r);

/* ------------------------------------------------------------------ */
/* Fork server (zygote side).                                          */

typedef struct {
    int ctl_fd;            /* socket to the supervisor                          */
    uid_t run_uid;         /* unprivileged uid/gid for children (when root)     */
    gid_t run_gid;
    const char *scratch;   /* directory where each run gets its scratch dir     */
    const char **ro_paths; /* read+execute allowed (Landlock), NULL-terminated  */
    const char **dev_paths;/* device files allowed read/write, NULL-terminated  */
    int want_namespaces;   /* unshare mount+net ns in the zygote (if possible)  */
    int in_pid_ns;         /* the supervisor placed us in a fresh pid ns        */
    uint32_t nproc;        /* RLIMIT_NPROC for children (threads count too)     */
    /* Hooks around fork (the Python binding passes PyOS_*Fork*). May be NULL. */
    void (*before_fork)(void);
    void (*after_fork_parent)(void);
    void (*after_fork_child)(void);
} azr_sbx_zygote_config;

typedef struct azr_sbx_zygote azr_sbx_zygote;

/* What serve hands back in a forked child: the request, layers installed. */
typedef struct {
    uint32_t mode;
    char *a; uint32_t a_len;
    char *b; uint32_t b_len;
    char *c; uint32_t c_len;
    uint32_t result_cap;
} azr_sbx_child_request;

/* Prepare the zygote: namespaces, scratch tmpfs, Landlock path handles,
 * probe which layers work, send the hello. Returns AZR_ERR_INVALID on NULL
 * arguments and AZR_ERR_SYSTEM when the control socket is unusable; missing
 * optional layers are not errors (they are left out of the mask). */
azr_status azr_sbx_zygote_init(const azr_sbx_zygote_config *cfg, azr_sbx_zygote **out);

/* The layer mask init found. */
uint32_t azr_sbx_zygote_layers(const azr_sbx_zygote *z);

/* Serve requests until the supervisor closes the socket, or until the
 * scratch cannot be made clean after a run (the last reply then carries
 * AZR_SBX_F_RETIRED). Returns AZR_OK with *is_child = 0 on either end; returns AZR_OK with *is_child = 1 inside a
 * forked child, with every layer installed and `req` filled (the child must
 * finish with azr_sbx_child_reply and then _exit). A child that cannot
 * install a layer never returns: it reports and exits (fail closed). */
azr_status azr_sbx_zygote_serve(azr_sbx_zygote *z, azr_sbx_child_request *req, int *is_child);

/* Child side: write one result frame on the private pipe. Returns 0 or -1. */
int azr_sbx_child_reply(uint32_t status, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* AZR_SANDBOX_H */
