/*
 * layers.c -- the per-run isolation layers a fork-server child installs on
 * itself before any user code runs: the seccomp-BPF filter (written by hand,
 * no libseccomp), the Landlock ruleset; and the scratch removal the fork
 * server runs after each run (any shape a run can leave: no permissions, any
 * depth, links never followed).
 *
 * Owns: BPF program construction, Landlock syscalls and constants (defined
 * here because distribution headers lag the kernel's ABI).
 * Must not: fork, print, or decide policy beyond what the caller passes in.
 */
#include "layers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* seccomp                                                             */

#if defined(__x86_64__)
#define AZR_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AZR_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * 8)
#define ARG_HI(i) (offsetof(struct seccomp_data, args) + (i) * 8 + 4)

int azr_sbx_seccomp_supported(void) {
#ifdef AZR_AUDIT_ARCH
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
#else
    return 0;
#endif
}

#ifdef AZR_AUDIT_ARCH
/* Syscalls whose use ends the run as "denied". Each is guarded, so the list
 * compiles on architectures that lack some of them (aarch64 has no fork). */
static const int kill_list[] = {
#ifdef __NR_fork
    __NR_fork,
#endif
#ifdef __NR_vfork
    __NR_vfork,
#endif
    __NR_execve,
#ifdef __NR_execveat
    __NR_execveat,
#endif
    __NR_socket, __NR_socketpair, __NR_ptrace, __NR_process_vm_readv,
    __NR_process_vm_writev, __NR_kcmp, __NR_mount, __NR_umount2, __NR_pivot_root,
    __NR_chroot, __NR_unshare, __NR_setns,
#ifdef __NR_open_tree
    __NR_open_tree, __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
    __NR_setrlimit, __NR_setpriority, __NR_sched_setscheduler, __NR_sched_setparam,
#ifdef __NR_sched_setattr
    __NR_sched_setattr,
#endif
    __NR_ioprio_set, __NR_tkill,
#ifdef __NR_pidfd_open
    __NR_pidfd_open, __NR_pidfd_send_signal,
#endif
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
#ifdef __NR_io_uring_setup
    __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
#endif
    __NR_bpf, __NR_perf_event_open, __NR_userfaultfd, __NR_keyctl, __NR_add_key,
    __NR_request_key, __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_reboot, __NR_swapon,
    __NR_swapoff, __NR_acct, __NR_settimeofday, __NR_clock_settime, __NR_clock_adjtime,
    __NR_adjtimex, __NR_sethostname, __NR_setdomainname,
#ifdef __NR_iopl
    __NR_iopl, __NR_ioperm,
#endif
    __NR_quotactl, __NR_name_to_handle_at, __NR_open_by_handle_at, __NR_personality,
    __NR_memfd_create,
#ifdef __NR_memfd_secret
    __NR_memfd_secret,
#endif
    __NR_setuid, __NR_setgid, __NR_setreuid, __NR_setregid, __NR_setresuid, __NR_setresgid,
    __NR_setgroups, __NR_setfsuid, __NR_setfsgid, __NR_capset, __NR_mbind,
    __NR_migrate_pages, __NR_move_pages, __NR_vhangup, __NR_fanotify_init,
    /* inotify would report names of files appearing in readable host
     * directories. */
#ifdef __NR_inotify_init
    __NR_inotify_init,
#endif
    __NR_inotify_init1, __NR_inotify_add_watch,
    /* SysV IPC and POSIX message queues outlive the process that made them. */
#ifdef __NR_shmget
    __NR_shmget, __NR_shmat, __NR_shmctl, __NR_shmdt, __NR_semget, __NR_semop, __NR_semctl,
    __NR_semtimedop, __NR_msgget, __NR_msgsnd, __NR_msgrcv, __NR_msgctl,
#endif
    __NR_mq_open, __NR_mq_unlink, __NR_mq_timedsend, __NR_mq_timedreceive, __NR_mq_notify,
    __NR_mq_getsetattr,
};
#endif

#ifdef AZR_AUDIT_ARCH
/* A syscall that needs more than "allow": its number and the instructions
 * that decide it (each block ends in a RET; the accumulator holds nr). */
typedef struct {
    uint32_t nr;
    int len;
    struct sock_filter code[12];
} special;

#define S(...) ((struct sock_filter)__VA_ARGS__)

static int cmp_special(const void *a, const void *b) {
    uint32_t x = ((const special *)a)->nr, y = ((const special *)b)->nr;
    return x < y ? -1 : x > y;
}

typedef struct {
    struct sock_filter *f;
    int n, cap;
} prog_buf;

static int emit(prog_buf *p, struct sock_filter ins) {
    if (p->n >= p->cap) { errno = E2BIG; return -1; }
    p->f[p->n++] = ins;
    return 0;
}

/* Binary decision tree over the sorted specials: O(log n) compares per
 * syscall, and a short walk for the kernel's per-syscall action cache
 * (which emulates the filter for every syscall number at attach time). */
static int gen_tree(prog_buf *p, const special *sp, int lo, int hi) {
    if (hi - lo <= 3) {
        for (int i = lo; i < hi; i++) {
            if (emit(p, S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sp[i].nr, 0, (uint8_t)sp[i].len))) < 0) return -1;
            for (int k = 0; k < sp[i].len; k++)
                if (emit(p, sp[i].code[k]) < 0) return -1;
        }
        return emit(p, S(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)));
    }
    int mid = (lo + hi) / 2;
    int at = p->n;
    if (emit(p, S(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, sp[mid].nr, 0, 0))) < 0) return -1;
    if (gen_tree(p, sp, lo, mid) < 0) return -1;
    int skip = p->n - at - 1;
    if (skip > 255) { errno = E2BIG; return -1; }
    p->f[at].jt = (uint8_t)skip;
    return gen_tree(p, sp, mid, hi);
}
#endif

enum { POL_FULL, POL_BASE, POL_CHILD }; /* the seccomp policies */

#ifdef AZR_AUDIT_ARCH

/* Calls a fork server needs after its set-up but a run must not make: the
 * full filter kills them, the base filter lets them through, the child
 * filter kills them again. */
static int server_call(uint32_t nr) {
    if (nr == (uint32_t)__NR_setrlimit || nr == (uint32_t)__NR_capset) return 1;
    if (nr == (uint32_t)__NR_setpriority) return 1; /* the child filter has its own rule */
#ifdef __NR_pidfd_open
    if (nr == (uint32_t)__NR_pidfd_open) return 1;
#endif
    return 0;
}

/* Fill sp with the rules of `policy`; returns how many. */
static int policy_rules(int policy, pid_t self, special *sp, int cap) {
    const uint32_t KILL = SECCOMP_RET_KILL_PROCESS, ALLOW = SECCOMP_RET_ALLOW;
    int ns = 0;
    for (size_t i = 0; i < sizeof kill_list / sizeof kill_list[0] && ns < cap; i++) {
        uint32_t nr = (uint32_t)kill_list[i];
        int srv = server_call(nr);
        if ((policy == POL_BASE && srv) || (policy == POL_CHILD && !srv)) continue;
        /* A run may lower its own limits and priority (the rules below);
         * the kernel refuses raising them: the child's hard limits equal
         * its soft ones, RLIMIT_NICE is 0 and it holds no capability. */
        if (policy != POL_BASE && (nr == (uint32_t)__NR_setrlimit || nr == (uint32_t)__NR_setpriority))
            continue;
        sp[ns].nr = nr;
        sp[ns].len = 1;
        sp[ns].code[0] = S(BPF_STMT(BPF_RET | BPF_K, KILL));
        ns++;
    }
#ifdef __NR_clone3
    /* clone3 hides its flags behind a pointer: answer ENOSYS so libc falls
     * back to clone, whose flags we can inspect. (Inherited by the child.) */
    if (policy != POL_CHILD && ns < cap) {
        sp[ns].nr = __NR_clone3;
        sp[ns].len = 1;
        sp[ns].code[0] = S(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
        ns++;
    }
#endif
    const uint32_t nsflags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                             CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;
    if (policy == POL_BASE) {
        /* clone: new processes (the fork server's children) but never a
         * namespace flag. */
        special c = {__NR_clone, 4, {
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),
            S(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, nsflags, 0, 1)),
            S(BPF_STMT(BPF_RET | BPF_K, KILL)),
            S(BPF_STMT(BPF_RET | BPF_K, ALLOW))}};
        if (ns < cap) sp[ns++] = c;
        /* prlimit64: reading (new == NULL) as the child filter decides;
         * setting only on ourselves (pid 0 or our pid). */
        special q = {__NR_prlimit64, 9, {
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2)),
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(2))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 4, 0)),
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0)),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 1, 0)),
            S(BPF_STMT(BPF_RET | BPF_K, KILL)),
            S(BPF_STMT(BPF_RET | BPF_K, ALLOW))}};
        if (ns < cap) sp[ns++] = q;
        return ns;
    }
    {   /* clone: threads only (CLONE_THREAD set), never a namespace flag. */
        special c = {__NR_clone, 6, {
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),
            S(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0)),
            S(BPF_STMT(BPF_RET | BPF_K, KILL)),
            S(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, nsflags, 0, 1)),
            S(BPF_STMT(BPF_RET | BPF_K, KILL)),
            S(BPF_STMT(BPF_RET | BPF_K, ALLOW))}};
        if (ns < cap) sp[ns++] = c;
    }
    {   /* Signals: only to this process (its own pid / thread group). */
        const int self_first_arg[] = {__NR_kill, __NR_tgkill, __NR_rt_sigqueueinfo,
                                      __NR_rt_tgsigqueueinfo};
        for (size_t i = 0; i < 4 && ns < cap; i++) {
            special c = {(uint32_t)self_first_arg[i], 4, {
                S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),
                S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 0, 1)),
                S(BPF_STMT(BPF_RET | BPF_K, ALLOW)),
                S(BPF_STMT(BPF_RET | BPF_K, KILL))}};
            sp[ns++] = c;
        }
    }
    {   /* prlimit64: reading on ourselves (pid 0 or ours); setting on pid 0
         * only, as setrlimit does (the kernel refuses a raise: hard limits
         * equal soft ones and the run holds no capability). */
        special c = {__NR_prlimit64, 11, {
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2)),
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(2))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0)),
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),          /* setting */
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 4)),
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),          /* reading */
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0)),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 0, 1)),
            S(BPF_STMT(BPF_RET | BPF_K, ALLOW)),
            S(BPF_STMT(BPF_RET | BPF_K, KILL))}};
        if (ns < cap) sp[ns++] = c;
    }
    {   /* setpriority: this process only (PRIO_PROCESS, who 0 or our pid);
         * a lower priority is allowed, a higher one needs RLIMIT_NICE > 0. */
        special c = {__NR_setpriority, 7, {
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0 /* PRIO_PROCESS */, 0, 3)),
            S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1))),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0)),
            S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 1, 0)),
            S(BPF_STMT(BPF_RET | BPF_K, KILL)),
            S(BPF_STMT(BPF_RET | BPF_K, ALLOW))}};
        if (ns < cap) sp[ns++] = c;
    }
    return ns;
}

static int install_policy(int policy, pid_t self) {
    const uint32_t KILL = SECCOMP_RET_KILL_PROCESS;
    enum { NSP = 160 };
    special sp[NSP];
    int ns = policy_rules(policy, self, sp, NSP);
    qsort(sp, (size_t)ns, sizeof sp[0], cmp_special);
    struct sock_filter f[512];
    prog_buf p = {f, 0, 512};
    /* Wrong architecture (e.g. int 0x80 on x86_64): kill. */
    emit(&p, S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch))));
    emit(&p, S(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AZR_AUDIT_ARCH, 1, 0)));
    emit(&p, S(BPF_STMT(BPF_RET | BPF_K, KILL)));
    emit(&p, S(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))));
#if defined(__x86_64__)
    /* x32 syscalls carry bit 30: kill. */
    emit(&p, S(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1)));
    emit(&p, S(BPF_STMT(BPF_RET | BPF_K, KILL)));
#endif
    if (gen_tree(&p, sp, 0, ns) < 0) return -1;
    struct sock_fprog prog = {.len = (unsigned short)p.n, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
#endif

/* Install `policy`'s filter, or fail with ENOSYS where seccomp filters are
 * not built for this architecture. */
static int install_or_enosys(int policy, pid_t self) {
#ifndef AZR_AUDIT_ARCH
    (void)policy;
    (void)self;
    errno = ENOSYS;
    return -1;
#else
    return install_policy(policy, self);
#endif
}

int azr_sbx_seccomp_install(pid_t self) { return install_or_enosys(POL_FULL, self); }

int azr_sbx_seccomp_install_base(pid_t self) { return install_or_enosys(POL_BASE, self); }

int azr_sbx_seccomp_install_child(pid_t self) { return install_or_enosys(POL_CHILD, self); }

/* ------------------------------------------------------------------ */
/* Landlock                                                            */

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_REMOVE_DIR (1ULL << 4)
#define LL_FS_REMOVE_FILE (1ULL << 5)
#define LL_FS_MAKE_CHAR (1ULL << 6)
#define LL_FS_MAKE_DIR (1ULL << 7)
#define LL_FS_MAKE_REG (1ULL << 8)
#define LL_FS_MAKE_SOCK (1ULL << 9)
#define LL_FS_MAKE_FIFO (1ULL << 10)
#define LL_FS_MAKE_BLOCK (1ULL << 11)
#define LL_FS_MAKE_SYM (1ULL << 12)
#define LL_FS_REFER (1ULL << 13)
#define LL_FS_TRUNCATE (1ULL << 14)
#define LL_FS_IOCTL_DEV (1ULL << 15)
#define LL_NET_BIND_TCP (1ULL << 0)
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};
struct ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

int azr_sbx_landlock_abi(void) {
    long v = syscall(__NR_landlock_create_ruleset, NULL, 0, 1u /* VERSION */);
    return v < 0 ? 0 : (int)v;
}

static uint64_t ll_fs_handled(int abi) {
    uint64_t m = (1ULL << 13) - 1;
    if (abi >= 2) m |= LL_FS_REFER;
    if (abi >= 3) m |= LL_FS_TRUNCATE;
    if (abi >= 5) m |= LL_FS_IOCTL_DEV;
    return m;
}

static int ll_add(int rfd, int fd, uint64_t access) {
    struct ll_path_beneath pb = {.allowed_access = access, .parent_fd = fd};
    return (int)syscall(__NR_landlock_add_rule, rfd, 1 /* PATH_BENEATH */, &pb, 0);
}

int azr_sbx_landlock_build(int abi, const int *ro_fds, int n_ro, const int *dev_fds, int n_dev,
                           int scratch_fd) {
    if (abi < 1) { errno = ENOSYS; return -1; }
    struct ll_ruleset_attr attr = {0};
    size_t size = sizeof(uint64_t);
    attr.handled_access_fs = ll_fs_handled(abi);
    if (abi >= 4) { attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP; size = 16; }
    if (abi >= 6) { attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL; size = 24; }
    int rfd = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
    if (rfd < 0) return -1;
    const uint64_t ro = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR;
    const uint64_t file_ro = LL_FS_EXECUTE | LL_FS_READ_FILE;
    for (int i = 0; i < n_ro; i++) {
        struct stat st;
        if (fstat(ro_fds[i], &st) != 0) goto fail;
        if (ll_add(rfd, ro_fds[i], S_ISDIR(st.st_mode) ? ro : file_ro) != 0) goto fail;
    }
    for (int i = 0; i < n_dev; i++)
        if (ll_add(rfd, dev_fds[i], LL_FS_READ_FILE | LL_FS_WRITE_FILE) != 0) goto fail;
    if (scratch_fd >= 0) {
        uint64_t rw = LL_FS_READ_FILE | LL_FS_WRITE_FILE | LL_FS_READ_DIR | LL_FS_REMOVE_DIR |
                      LL_FS_REMOVE_FILE | LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_SYM |
                      LL_FS_MAKE_FIFO;
        if (abi >= 2) rw |= LL_FS_REFER;
        if (abi >= 3) rw |= LL_FS_TRUNCATE;
        if (ll_add(rfd, scratch_fd, rw) != 0) goto fail;
    }
    return rfd;
fail:;
    int e = errno;
    close(rfd);
    errno = e;
    return -1;
}

int azr_sbx_landlock_restrict(int rfd) {
    return (int)syscall(__NR_landlock_restrict_self, rfd, 0);
}

/* ------------------------------------------------------------------ */
/* Scratch removal: whatever a run left, without following symlinks.  */

/* The walk holds one open directory per level it is in, so it stops going
 * down at this depth: a deeper non-empty directory is moved up to the top
 * (one rename, whatever lies beneath it) and emptied by a later pass. No
 * depth is too deep, the stack and the descriptors stay bounded, and every
 * directory is read once per pass (no quadratic rescans). */
#define RM_MAX_DEPTH 16

typedef struct {
    int top;                  /* the directory being emptied          */
    unsigned long long fresh; /* counter for the names of moved trees */
    int moved;                /* something was moved up in this pass  */
} rm_walk;

/* Give the directory `name` in dfd back to its owner (us): a run may have
 * taken away read, write or search permission. Checked to be a directory
 * first, so no symlink is ever followed (nothing else runs as this uid
 * while the zygote cleans up: the run and its threads are dead). */
static int own_dir_at(int dfd, const char *name) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; return -1; }
    if ((st.st_mode & 0700) == 0700) return 0;
    return fchmodat(dfd, name, 0700, 0);
}

/* Open the directory `name` in dfd for emptying (never through a link). */
static int open_dir_at(int dfd, const char *name) {
    if (own_dir_at(dfd, name) != 0) return -1;
    return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Move the non-empty directory `name` in dfd to the top under a new name. */
static int move_up(rm_walk *w, int dfd, const char *name) {
    /* Moving a directory rewrites its "..": it needs write permission. */
    if (own_dir_at(dfd, name) != 0) return -1;
    for (int tries = 0; tries < 64; tries++) {
        char to[48];
        snprintf(to, sizeof to, ".azr-rm-%llu", w->fresh++);
        struct stat st;
        if (fstatat(w->top, to, &st, AT_SYMLINK_NOFOLLOW) == 0) continue; /* a run's own name */
        if (renameat(dfd, name, w->top, to) == 0) {
            w->moved = 1;
            return 0;
        }
        if (errno != EEXIST && errno != ENOTEMPTY) return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Remove everything in the directory open as dfd (taken and closed), which
 * lies `depth` levels below the top. Goes on past failures; -1 if any. */
static int rm_level(rm_walk *w, int dfd, int depth) {
    DIR *d = fdopendir(dfd);
    if (!d) { close(dfd); return -1; }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
        /* Files, links, fifos, sockets: one unlink (never followed). */
        if (unlinkat(dirfd(d), n, 0) == 0 || errno == ENOENT) continue;
        if (errno != EISDIR && errno != EPERM) { rc = -1; continue; }
        if (unlinkat(dirfd(d), n, AT_REMOVEDIR) == 0 || errno == ENOENT) continue;
        if (depth + 1 >= RM_MAX_DEPTH) {
            if (move_up(w, dirfd(d), n) != 0) rc = -1;
            continue;
        }
        int sub = open_dir_at(dirfd(d), n);
        if (sub < 0) { rc = -1; continue; }
        if (rm_level(w, sub, depth + 1) != 0) rc = -1;
        if (unlinkat(dirfd(d), n, AT_REMOVEDIR) != 0) rc = -1;
    }
    closedir(d);
    return rc;
}

/* Open `path` (a directory, not a link) for emptying, restoring its
 * owner's permissions if a run removed them. */
static int open_top(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        struct stat st;
        if (lstat(path, &st) != 0) return -1;
        if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; return -1; }
        if (chmod(path, (st.st_mode & 07777) | 0700) != 0) return -1;
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700) fchmod(fd, (st.st_mode & 07777) | 0700);
    return fd;
}

int azr_sbx_empty_dir(const char *path) {
    if (!path) { errno = EINVAL; return -1; }
    int top = open_top(path);
    if (top < 0) return -1;
    rm_walk w = {top, 0, 0};
    int rc;
    do {
        /* A fresh open description per pass: its own read position. */
        int fd = openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) { rc = -1; break; }
        w.moved = 0;
        rc = rm_level(&w, fd, 0);
    } while (w.moved); /* each pass shortens every moved tree by RM_MAX_DEPTH - 1 levels */
    close(top);
    return rc;
}

int azr_sbx_rmtree(const char *path) {
    if (!path) { errno = EINVAL; return -1; }
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    int rc = azr_sbx_empty_dir(path);
    if (rmdir(path) != 0) rc = -1;
    return rc;
}
