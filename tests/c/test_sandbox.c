/* test_sandbox.c -- the sandbox's isolation primitives under sanitizers:
 * the seccomp filter kills fork/exec/socket/foreign kill and foreign limits or
 * priorities but lets the allowed calls through (lowering one's own limits
 * and priority among them), Landlock refuses paths outside its rules, the
 * scratch removal never follows symlinks and removes every shape a run can
 * leave (as the run's uid), and the supervisor rejects bad
 * configurations. Children always leave with _exit (no sanitizer atexit work
 * under the filter). */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
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
static int do_kill_parent(void) { return kill(getppid(), 0) == 0 ? 1 : 2; }
/* Lowering one's own limits and priority is allowed (raising is the
 * kernel's to refuse: the sandbox sets hard = soft and drops capabilities). */
static int do_lower_own(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 3;
    r.rlim_cur = r.rlim_max = r.rlim_cur > 8 ? r.rlim_cur - 1 : r.rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) return 4;
    if (prlimit(0, RLIMIT_NOFILE, &r, NULL) != 0) return 5;
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, 0);
    if (errno) return 6;
    if (setpriority(PRIO_PROCESS, 0, prio < 19 ? prio + 1 : prio) != 0) return 7;
    return 0;
}
static int do_priority_of_parent(void) { return setpriority(PRIO_PROCESS, getppid(), 19) == 0 ? 1 : 2; }
static int do_priority_of_group(void) { return setpriority(PRIO_PGRP, 0, 19) == 0 ? 1 : 2; }
static int do_inotify(void) { return inotify_init1(0) >= 0 ? 1 : 2; }
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
    int (*denied[])(void) = {do_fork, do_socket, do_exec, do_kill_parent, do_priority_of_parent,
                             do_priority_of_group, do_inotify};
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
    st = in_filtered_child(do_lower_own);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = in_two_stage_child(do_lower_own);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "two-stage lowering: status %#x\n", st);
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

/* Count the entries of a directory (without . and ..); -1 on error. */
static int count_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* A chain of `depth` directories named "d" below dfd, made through
 * descriptors (no path gets long); the deepest gets a file and, if
 * `lock`, every level's permissions are removed on the way back up.
 * Returns 0 or -1. */
static int make_chain(int dfd, int depth, int lock) {
    int fd = dup(dfd);
    int *fds = malloc(sizeof(int) * (size_t)(depth + 1));
    if (fd < 0 || !fds) return -1;
    fds[0] = fd;
    for (int i = 1; i <= depth; i++) {
        if (mkdirat(fds[i - 1], "d", 0700) != 0) return -1;
        fds[i] = openat(fds[i - 1], "d", O_RDONLY | O_DIRECTORY);
        if (fds[i] < 0) return -1;
        /* keep the descriptor count small: only a window stays open */
        if (i >= 2 && !lock) { close(fds[i - 1]); fds[i - 1] = -1; }
    }
    int f = openat(fds[depth], "leaf", O_CREAT | O_WRONLY, 0600);
    if (f < 0) return -1;
    close(f);
    for (int i = depth; i >= 1; i--) {
        if (lock && fchmod(fds[i], 0) != 0) return -1;
        if (fds[i] >= 0) close(fds[i]);
    }
    close(fds[0]);
    free(fds);
    return 0;
}

/* In a child running as an unprivileged uid (root would ignore the
 * permissions a run removes): build every shape a run can leave in a
 * scratch directory, empty it, and check nothing is left and nothing
 * outside was touched. Exit code = the failed step (0 = all good). */
static int leftovers_child(void) {
    gid_t g = 61000;
    if (geteuid() == 0 && (setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 || setresuid(g, g, g) != 0))
        return 1;
    char top[] = "/tmp/azr-left-XXXXXX", outside[] = "/tmp/azr-keep-XXXXXX";
    if (!mkdtemp(top) || !mkdtemp(outside)) return 2;
    char p[512];
    snprintf(p, sizeof p, "%s/kept", outside);
    int f = open(p, O_CREAT | O_WRONLY, 0600);
    if (f < 0) return 3;
    close(f);
    if (chmod(outside, 0555) != 0) return 3;
    int t = open(top, O_RDONLY | O_DIRECTORY);
    if (t < 0) return 4;
    /* a directory with files, then its permissions removed */
    if (mkdirat(t, "locked", 0700) != 0) return 5;
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "locked/f%d", i);
        if ((f = openat(t, p, O_CREAT | O_WRONLY, 0600)) < 0) return 6;
        close(f);
    }
    if (fchmodat(t, "locked", 0, 0) != 0) return 7;
    /* a file with no permissions, a fifo, a socket */
    if ((f = openat(t, "noperm", O_CREAT | O_WRONLY, 0)) < 0) return 8;
    close(f);
    if (mkfifoat(t, "fifo", 0600) != 0) return 9;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/sock", top);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) != 0) return 10;
    close(s);
    /* links out of the scratch: to a directory, a file, and dangling */
    if (symlinkat(outside, t, "link_dir") != 0) return 11;
    snprintf(p, sizeof p, "%s/kept", outside);
    if (symlinkat(p, t, "link_file") != 0 || symlinkat("/nonexistent/x", t, "dangling") != 0) return 12;
    /* a 10,000-deep chain, and a 40-deep one locked at every level */
    if (mkdirat(t, "deep", 0700) != 0 || mkdirat(t, "deeplocked", 0700) != 0) return 13;
    int dd = openat(t, "deep", O_RDONLY | O_DIRECTORY), dl = openat(t, "deeplocked", O_RDONLY | O_DIRECTORY);
    if (dd < 0 || dl < 0 || make_chain(dd, 10000, 0) != 0 || make_chain(dl, 40, 1) != 0) return 14;
    /* a link deep down, where the walk moves trees up */
    int cur = dup(dd);
    for (int i = 0; i < 30; i++) {
        int nx = openat(cur, "d", O_RDONLY | O_DIRECTORY);
        close(cur);
        if (nx < 0) return 15;
        cur = nx;
    }
    if (symlinkat(outside, cur, "link_deep") != 0) return 16;
    close(cur);
    close(dd);
    close(dl);
    /* the name the walk gives moved trees, taken already */
    if (mkdirat(t, ".azr-rm-0", 0700) != 0 || mkdirat(t, ".azr-rm-0/x", 0700) != 0) return 17;
    /* many non-empty directories side by side, deep enough to be moved */
    if (mkdirat(t, "wide", 0700) != 0) return 18;
    int w = openat(t, "wide", O_RDONLY | O_DIRECTORY);
    if (w < 0 || make_chain(w, 20, 0) != 0) return 19;
    cur = dup(w);
    for (int i = 0; i < 20; i++) {
        int nx = openat(cur, "d", O_RDONLY | O_DIRECTORY);
        close(cur);
        cur = nx;
    }
    for (int i = 0; i < 500; i++) {
        snprintf(p, sizeof p, "w%d", i);
        if (mkdirat(cur, p, 0700) != 0) return 20;
        snprintf(p, sizeof p, "w%d/f", i);
        if ((f = openat(cur, p, O_CREAT | O_WRONLY, 0600)) < 0) return 21;
        close(f);
    }
    close(cur);
    close(w);
    /* finally the top itself loses its permissions */
    if (fchmod(t, 0) != 0) return 22;
    close(t);

    if (azr_sbx_empty_dir(top) != 0) return 30;
    if (count_entries(top) != 0) return 31;
    struct stat st;
    if (stat(outside, &st) != 0 || (st.st_mode & 07777) != 0555) return 32;
    snprintf(p, sizeof p, "%s/kept", outside);
    if (access(p, F_OK) != 0) return 33;
    if (azr_sbx_rmtree(top) != 0 || access(top, F_OK) == 0) return 34;
    chmod(outside, 0700);
    unlink(p);
    rmdir(outside);
    return 0;
}

static void test_empty_dir_removes_every_shape(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(leftovers_child());
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "leftovers child: step %d\n", WEXITSTATUS(st));
    CHECK(azr_sbx_empty_dir(NULL) == -1 && errno == EINVAL);
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
    test_empty_dir_removes_every_shape();
    test_pool_config_errors();
    TEST_MAIN_END();
}
