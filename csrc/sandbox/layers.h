/*
 * layers.h -- isolation primitives for the sandbox's fork-server children.
 * Owns: seccomp-BPF and Landlock installation, safe scratch removal.
 * Must not: fork, print or choose policy. All functions return -1 with errno
 * set on failure (they run in a child that reports errno itself).
 */
#ifndef AZR_SANDBOX_LAYERS_H
#define AZR_SANDBOX_LAYERS_H

#include <sys/types.h>

/* 1 if this kernel and architecture can take our seccomp filter. */
int azr_sbx_seccomp_supported(void);

/* Set no_new_privs and install the filter on the calling thread (before any
 * other thread exists). `self` is the caller's pid as it sees it: kill,
 * tgkill and rt_sig*queueinfo are allowed only towards it. Denied calls
 * (fork/vfork/exec, clone without CLONE_THREAD or with namespace flags,
 * socket, ptrace, mount/unshare/setns, setrlimit/prlimit with a new limit,
 * priority raising, io_uring, bpf, module and clock calls, setuid family...)
 * kill the whole process with SIGSYS; clone3 answers ENOSYS so libc falls
 * back to clone. Returns 0 or -1. */
int azr_sbx_seccomp_install(pid_t self);

/* The same policy in two stages, so a fork server pays for the large filter
 * once instead of once per run:
 *   - base (installed once by the fork server on itself, inherited by every
 *     child): the full policy except for what a fork server still needs --
 *     clone of new processes (never with a namespace flag), kill of any
 *     process, pidfd_open, setrlimit/prlimit64 on itself, capset;
 *   - child (installed by each run on top of the inherited base): exactly
 *     those exceptions taken back (threads only, signals and prlimit64 read-
 *     only to itself, setrlimit/pidfd_open/capset killed).
 * base followed by child allows and kills the same calls as the full filter
 * (the kernel applies the most restrictive answer of all filters). `self`
 * as above. Both set no_new_privs. Return 0 or -1. */
int azr_sbx_seccomp_install_base(pid_t self);
int azr_sbx_seccomp_install_child(pid_t self);

/* Landlock ABI version of the running kernel, 0 if unavailable. */
int azr_sbx_landlock_abi(void);

/* Build a ruleset handling every filesystem right of `abi` (plus TCP bind/
 * connect from ABI 4 and signal/abstract-socket scoping from ABI 6) that
 * allows: read+execute beneath each ro_fds[i] (O_PATH descriptors; files get
 * file rights only), read+write on each dev_fds[i], and full file work (no
 * exec, no device nodes) beneath scratch_fd (-1: none). Returns the ruleset
 * fd or -1. n_ro/n_dev may be 0 (then the arrays may be NULL). */
int azr_sbx_landlock_build(int abi, const int *ro_fds, int n_ro, const int *dev_fds, int n_dev,
                           int scratch_fd);

/* landlock_restrict_self(rfd): needs no_new_privs. Returns 0 or -1. */
int azr_sbx_landlock_restrict(int rfd);

/* Remove everything inside the directory `path`, keeping `path` itself:
 * files, links (never followed), fifos, sockets, and directories of any
 * depth whose permissions a run removed (the caller must own them; their
 * owner's rwx is restored as the walk goes). At most 17 descriptors are
 * open at once, whatever the depth. Returns 0, or -1 if something could
 * not be removed (the walk goes on past it): the caller checks what is
 * left. NULL is EINVAL. */
int azr_sbx_empty_dir(const char *path);

/* Remove `path` and everything beneath it (as azr_sbx_empty_dir, then the
 * directory itself; a file or link at `path` is unlinked, never followed).
 * A missing path is success. Returns 0 or -1. */
int azr_sbx_rmtree(const char *path);

#endif
