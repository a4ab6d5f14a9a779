//! rcon's default seccomp profile for `rcon run`: an allowlist, as Docker's.
//!
//! Everything not named here fails with EPERM, so a syscall the kernel adds
//! tomorrow is refused until someone has looked at it. The calls that only
//! make sense with a capability (mount with CAP_SYS_ADMIN, ptrace with
//! CAP_SYS_PTRACE, ...) are allowed only when the container holds it, so
//! `--cap-add` lifts the filter the way it does under Docker. The table is
//! data; `profile` only assembles it. docs/SECURITY.md explains the choices.

use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde_json::{json, Value};

/// Allowed in every container. Grouped by what they are for; a name this
/// libseccomp does not know is skipped when the filter is compiled.
const ALLOWED: &[&str] = &[
    // files and directories
    "access",
    "faccessat",
    "faccessat2",
    "chdir",
    "fchdir",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "close",
    "close_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "flock",
    "fadvise64",
    "fallocate",
    "fdatasync",
    "fsync",
    "sync",
    "syncfs",
    "sync_file_range",
    "ftruncate",
    "truncate",
    "getcwd",
    "getdents",
    "getdents64",
    "link",
    "linkat",
    "lseek",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "open",
    "openat",
    "openat2",
    "read",
    "readv",
    "pread64",
    "preadv",
    "preadv2",
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "readlink",
    "readlinkat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "umask",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "readahead",
    "ioctl",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "getxattrat",
    "setxattrat",
    "listxattrat",
    "removexattrat",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "fanotify_mark",
    "memfd_create",
    "pipe",
    "pipe2",
    // asynchronous I/O and waiting (io_uring is left out, as Docker now does)
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_submit",
    "io_cancel",
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    // memory
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "remap_file_pages",
    "membarrier",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "map_shadow_stack",
    "mseal",
    // processes, threads, ids (clone and personality are filtered by argument below)
    "arch_prctl",
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "tkill",
    "tgkill",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "getresuid",
    "getresgid",
    "setfsuid",
    "setfsgid",
    "getgroups",
    "setgroups",
    "capget",
    "capset",
    "prctl",
    "getpriority",
    "setpriority",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getattr",
    "sched_setattr",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_yield",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "futex",
    "futex_waitv",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "rseq",
    "restart_syscall",
    "ioprio_get",
    "ioprio_set",
    "pidfd_open",
    "pidfd_send_signal",
    "seccomp",
    "set_thread_area",
    "get_thread_area",
    "getcpu",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    // ptrace is safe from a container on kernels >= 4.8, and rcon needs >= 5.3 (pidfd_open)
    "ptrace",
    // the UTS namespace is the container's own
    "uname",
    "sethostname",
    "setdomainname",
    "sysinfo",
    // time (reading it; setting it needs CAP_SYS_TIME, below)
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "adjtimex",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "pause",
    // signals
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    // System V and POSIX IPC (the IPC namespace is the container's own)
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    // sockets
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    // randomness
    "getrandom",
];

/// Calls that a capability re-allows (Docker gates the same ones).
const BY_CAP: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "mount",
            "umount2",
            "mount_setattr",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "move_mount",
            "pivot_root",
            "unshare",
            "setns",
            "clone3",
            "bpf",
            "perf_event_open",
            "fanotify_init",
            "lookup_dcookie",
            "name_to_handle_at",
            "quotactl",
            "quotactl_fd",
            "swapon",
            "swapoff",
            "syslog",
        ],
    ),
    (Capability::SysBoot, &["reboot", "kexec_load", "kexec_file_load"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["init_module", "finit_module", "delete_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev"]),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "stime", "clock_settime", "clock_adjtime"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &["get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "migrate_pages", "move_pages"],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
];

/// The clone flags that make a namespace: clone may not set any of them
/// without CAP_SYS_ADMIN (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
const NEW_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The personalities a program may ask for: Linux, 32-bit Linux, UNAME26,
/// both, and the query (0xffffffff). Not READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// ENOSYS for clone3, so that glibc falls back to clone, whose flags the
/// filter can see (clone3 passes them in memory).
const ENOSYS: u32 = libc::ENOSYS as u32;

/// The default profile for a container that holds `caps` (its bounding set).
pub fn profile(caps: &[Capability]) -> LinuxSeccomp {
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (cap, names) in BY_CAP {
        if !caps.contains(cap) {
            continue;
        }
        for n in *names {
            if !allowed.contains(n) {
                allowed.push(n);
            }
        }
    }
    let mut rules = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    let personality: Vec<Value> =
        PERSONALITIES.iter().map(|p| json!({"index": 0, "value": p, "op": "SCMP_CMP_EQ"})).collect();
    rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": personality}));
    if caps.contains(&Capability::SysAdmin) {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW"}));
    } else {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": NEW_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    let v = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::EPERM, "syscalls": rules});
    serde_json::from_value(v).expect("the default seccomp profile is valid OCI")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompAction;

    /// What Docker's documentation lists as blocked by its default profile.
    const DOCKER_BLOCKS: &[&str] = &[
        "acct",
        "add_key",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "clone3",
        "create_module",
        "delete_module",
        "finit_module",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "move_pages",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "perf_event_open",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "query_module",
        "quotactl",
        "reboot",
        "request_key",
        "set_mempolicy",
        "setns",
        "settimeofday",
        "stime",
        "swapon",
        "swapoff",
        "sysfs",
        "_sysctl",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "open_tree",
        "move_mount",
    ];

    fn docker_default_caps() -> Vec<Capability> {
        use Capability::*;
        vec![
            Chown,
            DacOverride,
            Fsetid,
            Fowner,
            Mknod,
            NetRaw,
            Setgid,
            Setuid,
            Setfcap,
            Setpcap,
            NetBindService,
            SysChroot,
            Kill,
            AuditWrite,
        ]
    }

    /// (name, action, has args) for every rule naming `name`.
    fn rules_for(p: &LinuxSeccomp, name: &str) -> Vec<(LinuxSeccompAction, bool)> {
        p.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .map(|r| (r.action(), r.args().as_ref().is_some_and(|a| !a.is_empty())))
            .collect()
    }

    fn allowed_outright(p: &LinuxSeccomp, name: &str) -> bool {
        rules_for(p, name).iter().any(|(a, args)| *a == LinuxSeccompAction::ScmpActAllow && !args)
    }

    #[test]
    fn blocks_everything_docker_blocks_with_default_caps() {
        let p = profile(&docker_default_caps());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        for name in DOCKER_BLOCKS {
            assert!(!allowed_outright(&p, name), "{name} is allowed");
        }
        // clone only without namespace flags; clone3 says ENOSYS so libc falls back to clone.
        assert_eq!(rules_for(&p, "clone"), vec![(LinuxSeccompAction::ScmpActAllow, true)]);
        assert_eq!(rules_for(&p, "clone3"), vec![(LinuxSeccompAction::ScmpActErrno, false)]);
        assert_eq!(rules_for(&p, "personality"), vec![(LinuxSeccompAction::ScmpActAllow, true)]);
    }

    #[test]
    fn capabilities_reallow_their_calls() {
        let mut caps = docker_default_caps();
        caps.push(Capability::SysAdmin);
        let p = profile(&caps);
        for name in ["mount", "umount2", "unshare", "setns", "clone", "clone3", "fsopen", "bpf"] {
            assert!(allowed_outright(&p, name), "{name} not allowed with CAP_SYS_ADMIN");
        }
        assert!(!allowed_outright(&p, "process_vm_readv"));
        let p = profile(&[Capability::SysPtrace, Capability::SysTime]);
        for name in ["process_vm_readv", "kcmp", "clock_settime", "settimeofday", "ptrace"] {
            assert!(allowed_outright(&p, name), "{name}");
        }
        assert!(!allowed_outright(&p, "mount") && !allowed_outright(&p, "chroot"));
        assert!(!allowed_outright(&p, "keyctl"), "keys are never namespaced");
    }

    #[test]
    fn every_name_is_a_real_syscall_and_listed_once() {
        let all: Vec<&str> = ALLOWED.iter().chain(BY_CAP.iter().flat_map(|(_, n)| n.iter())).copied().collect();
        // Newer than some libseccomp releases; the compiler skips what it does not know.
        let recent = [
            "fchmodat2",
            "map_shadow_stack",
            "mseal",
            "futex_wake",
            "futex_wait",
            "futex_requeue",
            "getxattrat",
            "setxattrat",
            "listxattrat",
            "removexattrat",
            "set_mempolicy_home_node",
            "stime",
        ];
        for name in &all {
            let known = libseccomp::ScmpSyscall::from_name(name).is_ok();
            assert!(known || recent.contains(name), "{name}: not a syscall libseccomp knows");
        }
        let mut seen = std::collections::HashSet::new();
        for name in ALLOWED {
            assert!(seen.insert(name), "{name} twice in ALLOWED");
        }
        assert!(crate::runtime::seccomp::compile(Some(&profile(&docker_default_caps()))).unwrap().is_some());
    }
}
