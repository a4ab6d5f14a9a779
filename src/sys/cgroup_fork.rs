//! fork(), with the child born in its cgroups. Moving a process into a
//! cgroup2 group by writing `cgroup.procs` takes the kernel's threadgroup
//! lock for writing, which waits for an RCU grace period (4–13 ms on these
//! VMs); clone3 with CLONE_INTO_CGROUP places the child at birth and takes
//! that lock only for reading. A v1 group is joined by the child's one
//! thread writing `0` to `tasks`, the one migration that skips the lock.

use std::fs::File;
use std::os::fd::AsRawFd;

use anyhow::{Context as _, Result};
use nix::unistd::{fork, ForkResult, Pid};

/// linux/sched.h; libc's constant is an overflowing c_int.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3's argument block (linux/sched.h, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Where the child of `fork_joined` goes: a cgroup2 dir and v1 group dirs.
#[derive(Default)]
pub struct Groups<'a> {
    pub v2: Option<&'a File>,
    pub v1: &'a [File],
}

/// Which side of `fork_joined` this is.
pub enum Forked {
    Parent(Pid),
    /// The child, with how joining its groups went: on an error it must
    /// report and exit, never return into the parent's code.
    Child(Result<()>),
}

/// Fork a child that is in `groups` before it runs anything else. An error
/// is a failed fork (in the parent).
///
/// # Safety
/// As for fork(): the caller must be single-threaded, or the child must make
/// only async-signal-safe calls until it execs or exits.
pub unsafe fn fork_joined(groups: &Groups) -> Result<Forked> {
    // SAFETY: the caller's contract above.
    Ok(match unsafe { fork_into(groups.v2) }? {
        (ForkResult::Parent { child }, _) => Forked::Parent(child),
        (ForkResult::Child, born_in) => Forked::Child((|| {
            if let (Some(dir), false) = (groups.v2, born_in) {
                join_v2(dir)?;
            }
            groups.v1.iter().try_for_each(join_v1)
        })()),
    })
}

/// fork(), but born inside `cgroup` when one is given; returns whether the
/// child is already in it (if not, it is where the caller is).
///
/// # Safety
/// As for fork(), see `fork_joined`.
pub unsafe fn fork_into(cgroup: Option<&File>) -> Result<(ForkResult, bool)> {
    // SAFETY: the caller's contract.
    unsafe { clone_into(0, cgroup) }
}

/// [`fork_into`] with clone `flags` too (new namespaces: CLONE_NEWPID makes
/// the child its namespace's pid 1).
///
/// # Safety
/// As for fork(), see `fork_joined`; with `flags`, the child must make only
/// raw system calls (it may come from clone(2), past libc's fork handlers).
pub unsafe fn clone_into(flags: u64, cgroup: Option<&File>) -> Result<(ForkResult, bool)> {
    let clone3 = |flags: u64, cgroup: u64| {
        let args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, cgroup, ..Default::default() };
        // SAFETY: no CLONE_VM and no stack: the child runs on a copy of our
        // memory, exactly as after fork(); the caller vouches for threads.
        unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) }
    };
    let forked = |r: libc::c_long, born_in: bool| match r {
        0 => Some((ForkResult::Child, born_in)),
        pid if pid > 0 => Some((ForkResult::Parent { child: Pid::from_raw(pid as i32) }, born_in)),
        _ => None,
    };
    if let Some(dir) = cgroup {
        // An older kernel (ENOSYS) or a cgroup that refuses: fork, then join.
        if let Some(r) = forked(clone3(flags | CLONE_INTO_CGROUP, dir.as_raw_fd() as u64), true) {
            return Ok(r);
        }
    }
    if flags == 0 {
        // SAFETY: the caller's contract (single-threaded, or async-signal-safe child).
        return Ok((unsafe { fork() }.context("fork")?, false));
    }
    if let Some(r) = forked(clone3(flags, 0), false) {
        return Ok(r);
    }
    // SAFETY: clone(2) without CLONE_VM or a stack is a fork with `flags`; the caller's contract covers
    // the child (raw calls only).
    let r = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0, 0, 0, 0) };
    forked(r, false).ok_or_else(std::io::Error::last_os_error).context("clone")
}

/// Move the calling process into the cgroup2 group `dir`.
pub fn join_v2(dir: &File) -> Result<()> {
    move_self(dir, "cgroup.procs")
}

/// Move the calling thread into the v1 group `dir`: the whole process when
/// it is single-threaded, as the processes rcon forks are.
pub fn join_v1(dir: &File) -> Result<()> {
    move_self(dir, "tasks")
}

/// Move process `pid` into the cgroup2 group `dir` (the slow way).
pub fn move_into_v2(dir: &File, pid: Pid) -> Result<()> {
    write_member(dir, "cgroup.procs", pid.to_string().as_bytes())
}

fn move_self(dir: &File, file: &str) -> Result<()> {
    write_member(dir, file, b"0")
}

fn write_member(dir: &File, file: &str, what: &[u8]) -> Result<()> {
    let f = nix::fcntl::openat(
        dir,
        file,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening {file}"))?;
    nix::unistd::write(&f, what).context("joining a cgroup")?;
    Ok(())
}
