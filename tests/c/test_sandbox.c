/* test_sandbox.c -- the sandbox's isolation primitives under sanitizers:
 * the seccomp filter kills fork/exec/socket/setrlimit/foreign kill but lets
 * the allowed calls through, Landlock refuses paths outside its rules, the
 * scratch removal never follows symlinks, and the supervisor rejects bad
 * configurations. Children always leave with _exit (no sanitizer atexit work
 * under the filter). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "azr_test.h"
#include "sandbox/layers.h"
#include "sandbox/sandbox.h"

/* Run `body` in a child after `install` succeeds; return its wait status. */
static int under_filter(int (*install)(pid_t), int (*body)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        if (install(getpid()) != 0) _exit(90);
        _exit(body());
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

/* Run `body` in a child under the full filter. */
static int in_filtered_child(int (*body)(void)) {
    return under_filter(azr_sbx_seccomp_install, body);
}

/* The same, with the two-stage policy: the base filter (what a fork server
 * installs on itself), then the child filter on top. */
static int in_two_stage_child(int (*body)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        if (azr_sbx_seccomp_install_base(getpid()) != 0) _exit(90);
        /* A fork server under the base filter can still fork its runs. */
        pid_t inner = fork();
        if (inner == 0) {
            if (azr_sbx_seccomp_install_child(getpid()) != 0) _exit(91);
            _exit(body());
        }
        if (inner < 0) _exit(92);
        int st = 0;
        if (waitpid(inner, &st, 0) != inner) _exit(93);
        /* Hand the grandchild's fate up unchanged. */
        if (WIFSIGNALED(st)) kill(getpid(), WTERMSIG(st));
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 94);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

/* Only the base filter: what the fork server itself may and may not do. */
static int base_only(int (*body)(void)) {
    return under_filter(azr_sbx_seccomp_install_base, body);
}

static int do_fork(void) { return (int)syscall(SYS_fork) >= 0 ? 1 : 2; }
static int do_socket(void) { return socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 1 : 2; }
static int do_exec(void) {
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    execve("/bin/true", argv, envp);
    return 2;
}
static int do_setrlimit(void) {
    struct rlimit r = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_AS, &r);
    return 2;
}
static int do_kill_parent(void) { return kill(getppid(), 0) == 0 ? 1 : 2; }
static int do_allowed(void) {
    /* Signalling ourselves, reading limits, files and pipes stay allowed. */
    struct rlimit r;
    int fds[2];
    if (kill(getpid(), 0) != 0) return 3;
    if (getrlimit(RLIMIT_AS, &r) != 0) return 4;
    if (pipe(fds) != 0) return 5;
    if (write(fds[1], "x", 1) != 1) return 6;
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) return 7;
    close(fd);
    return 0;
}

static int do_server_work(void) {
    /* libc fork (clone with SIGCHLD), setrlimit, kill of the forked child. */
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0 || setrlimit(RLIMIT_NOFILE, &r) != 0) return 3;
    pid_t c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    if (c < 0) return 4;
    if (kill(c, SIGKILL) != 0) return 5;
    int st = 0;
    if (waitpid(c, &st, 0) != c || !WIFSIGNALED(st)) return 6;
    return 0;
}
/* Reading our own limits by our pid (not 0) is allowed by the full filter;
 * the two stages must agree. Setting a limit by pid is not. */
static int do_prlimit_read_self(void) {
    struct rlimit r;
    return prlimit(getpid(), RLIMIT_NOFILE, NULL, &r) == 0 ? 0 : 3;
}
static int do_prlimit_set_self(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 3;
    prlimit(getpid(), RLIMIT_NOFILE, &r, NULL);
    return 2;
}
static int do_unshare(void) { return unshare(CLONE_NEWNET) == 0 ? 1 : 2; }

static void test_seccomp(void) {
    if (!azr_sbx_seccomp_supported()) {
        printf("seccomp unsupported here: skipped\n");
        return;
    }
    int (*denied[])(void) = {do_fork, do_socket, do_exec, do_setrlimit, do_kill_parent};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        int st = in_filtered_child(denied[i]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
    }
    int st = in_filtered_child(do_allowed);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Two stages: the same verdicts as the full filter. */
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        st = in_two_stage_child(denied[i]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)) fprintf(stderr, "two-stage case %zu: status %#x\n", i, st);
    }
    st = in_two_stage_child(do_unshare);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
    st = in_two_stage_child(do_allowed);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_filtered_child(do_prlimit_read_self);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_two_stage_child(do_prlimit_read_self);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_filtered_child(do_prlimit_set_self);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
    st = in_two_stage_child(do_prlimit_set_self);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
    /* The base alone lets a fork server work but still refuses the rest. */
    st = base_only(do_server_work);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "base server work: status %#x\n", st);
    int (*base_denied[])(void) = {do_socket, do_exec, do_unshare};
    for (size_t i = 0; i < sizeof base_denied / sizeof base_denied[0]; i++) {
        st = base_only(base_denied[i]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
    }
}

static void test_landlock(void) {
    int abi = azr_sbx_landlock_abi();
    if (abi < 1) {
        printf("landlock unavailable here: skipped\n");
        return;
    }
    char dir[] = "/tmp/azr-ll-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int ro = open("/usr", O_PATH | O_CLOEXEC);
        int dev = open("/dev/null", O_PATH | O_CLOEXEC);
        int scratch = open(dir, O_PATH | O_CLOEXEC);
        int rfd = azr_sbx_landlock_build(abi, &ro, 1, &dev, 1, scratch);
        if (rfd < 0) _exit(10);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(11);
        if (azr_sbx_landlock_restrict(rfd) != 0) _exit(12);
        errno = 0;
        if (open("/etc/hostname", O_RDONLY) >= 0 || errno != EACCES) _exit(13);
        if (open("/usr", O_RDONLY | O_DIRECTORY) < 0) _exit(14);
        if (open("/dev/null", O_WRONLY) < 0) _exit(15);
        char path[64];
        snprintf(path, sizeof path, "%s/f", dir);
        int fd = open(path, O_CREAT | O_WRONLY, 0600);
        if (fd < 0) _exit(16);
        close(fd);
        if (open("/tmp/azr-ll-escape", O_CREAT | O_WRONLY, 0600) >= 0) _exit(17);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "landlock child exit %d\n", WEXITSTATUS(st));
    CHECK(access("/tmp/azr-ll-escape", F_OK) != 0);
    CHECK(azr_sbx_rmtree(dir) == 0);
}

static void test_rmtree_does_not_follow_symlinks(void) {
    char outside[] = "/tmp/azr-out-XXXXXX", dir[] = "/tmp/azr-rm-XXXXXX";
    CHECK(mkdtemp(outside) != NULL && mkdtemp(dir) != NULL);
    char p[256], q[256];
    snprintf(p, sizeof p, "%s/keep", outside);
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    snprintf(q, sizeof q, "%s/sub", dir);
    CHECK(mkdir(q, 0700) == 0);
    snprintf(q, sizeof q, "%s/sub/deeper", dir);
    CHECK(mkdir(q, 0700) == 0);
    snprintf(q, sizeof q, "%s/sub/link_dir", dir);
    CHECK(symlink(outside, q) == 0);
    snprintf(q, sizeof q, "%s/link_file", dir);
    CHECK(symlink(p, q) == 0);
    CHECK(azr_sbx_rmtree(dir) == 0);
    CHECK(access(dir, F_OK) != 0);
    CHECK(access(p, F_OK) == 0);
    CHECK(azr_sbx_rmtree(dir) == 0); /* missing: success */
    CHECK(azr_sbx_rmtree(NULL) == -1);
    unlink(p);
    rmdir(outside);
}

static void test_pool_config_errors(void) {
    azr_sbx_pool *p = NULL;
    CHECK(azr_sbx_pool_new(NULL, &p) == AZR_ERR_INVALID);
    azr_sbx_pool_config cfg = {"/nonexistent/python", "d.py", "e.so", "/tmp", NULL, 1, 0, 1000};
    CHECK(azr_sbx_pool_new(&cfg, &p) == AZR_ERR_INVALID && p == NULL);
    CHECK(strstr(azr_last_error(), "workers") != NULL);
    cfg.workers = 2;
    CHECK(azr_sbx_pool_new(&cfg, &p) == AZR_ERR_SYSTEM && p == NULL);
    CHECK(azr_sbx_pool_run(NULL, NULL, 0, NULL, NULL, NULL) == AZR_ERR_INVALID);
    azr_sbx_pool_free(NULL);
    azr_sbx_result_clear(NULL);
}

int main(void) {
    test_seccomp();
    test_landlock();
    test_rmtree_does_not_follow_symlinks();
    test_pool_config_errors();
    TEST_MAIN_END();
}
