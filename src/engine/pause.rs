//! rcon's built-in pause process, the first piece of pod sandboxes: it holds
//! a pod's namespaces for as long as it lives, and does nothing else. As pid
//! 1 of a shared pid namespace it reaps every orphan that lands on it; TERM
//! or INT end it cleanly (exit 0), as Kubernetes' pause does.
//!
//! It is a fork of `rcon pod create`, not a program of its own: an exec of
//! rcon costs a process start (about 1.7 ms here, the binary's loading and
//! setup), which was a tenth of a pod's create and remove. The fork is born
//! in its namespaces and its cgroup2 group (clone3), joins its v1 groups and
//! the pod's netns, and from then on runs raw system calls only, on memory
//! its creator prepared: the creator may have threads, and a fork of a
//! threaded process may not allocate or take a lock. Its command line reads
//! `rcon pause`, as the program's did.

use std::ffi::CString;
use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::unistd::ForkResult;

use crate::runtime::state::{self, Creator};
use crate::sys::cgroup_fork;

/// What the pause process needs, opened by its creator before the fork.
pub struct Setup {
    /// The pod's network namespace.
    pub netns: File,
    pub hostname: CString,
    /// A pid namespace of its own, whose pid 1 it is.
    pub new_pid: bool,
    /// Its cgroup2 group (a dir), and that group's `cgroup.procs` for a kernel that cannot clone into it.
    pub v2: Option<(File, File)>,
    /// The `tasks` file of each of its v1 groups.
    pub v1_tasks: Vec<File>,
    /// Where our command line's strings are (see [`argv_area`]).
    pub argv: Option<(usize, usize)>,
}

/// The address and length of this process's command line strings (`arg_start` and `arg_end` of
/// /proc/self/stat), which its fork may write over.
pub fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields 48 and 49, counted after the command name's closing parenthesis (field 2).
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(45);
    let (start, end): (usize, usize) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
    (end > start).then(|| (start, end - start))
}

/// What /proc/PID/cmdline shows: NUL-separated arguments.
static CMDLINE: &[u8] = b"rcon\0pause\0";

/// The steps that can fail in the child, as it reports them (their index).
const STEPS: [&str; 8] = [
    "joining the pod's network namespace",
    "setting the hostname",
    "joining its cgroup2 group",
    "joining a v1 group",
    "setsid",
    "setting no_new_privs",
    "making itself not dumpable",
    "dropping its capabilities",
];

/// capset(2)'s header and data (linux/capability.h; the libc crate has neither).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// _LINUX_CAPABILITY_VERSION_3: 64-bit sets, as two `CapData`.
const CAP_V3: u32 = 0x2008_0522;

/// How long the creator waits for the pause to report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Start the pause process; returns it once it is in its namespaces and groups.
pub fn spawn(s: &Setup) -> Result<Creator> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    // The child's report: a failed step's index and errno, or EOF once it holds nothing of ours.
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let mut flags = (libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;
    if s.new_pid {
        flags |= libc::CLONE_NEWPID as u64;
    }
    // SAFETY: the child runs `child`, which makes raw system calls only on memory made before the
    // fork, and never returns.
    let child = match unsafe { cgroup_fork::clone_into(flags, s.v2.as_ref().map(|(dir, _)| dir)) }
        .context("starting the pause process")?
    {
        (ForkResult::Child, born_in) => child(s, born_in, null.as_raw_fd(), report_w.as_raw_fd()),
        (ForkResult::Parent { child }, _) => child,
    };
    drop(report_w);
    let mut report = File::from(report_r);
    let mut got = [0u8; 8];
    let n = match read_report(&mut report, &mut got, Instant::now() + REPORT_TIMEOUT) {
        Ok(n) => n,
        // Not left behind half set up: it is not recorded yet.
        Err(e) => {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(e);
        }
    };
    if n > 0 {
        let _ = nix::sys::wait::waitpid(child, None);
        let step = STEPS.get(i32::from_ne_bytes(got[..4].try_into()?) as usize).unwrap_or(&"setup");
        let errno = nix::errno::Errno::from_raw(i32::from_ne_bytes(got[4..].try_into()?));
        bail!("the pause process: {step}: {errno}");
    }
    let start = state::proc_start_time(child.as_raw()).map(|(t, _)| t).context("the pause process exited at once")?;
    Ok(Creator { pid: child.as_raw(), start })
}

/// Read the child's report until EOF; how many bytes came.
fn read_report(f: &mut File, buf: &mut [u8; 8], deadline: Instant) -> Result<usize> {
    use std::os::fd::AsFd;
    let mut n = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [nix::poll::PollFd::new(f.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ms = nix::poll::PollTimeout::from(left.as_millis().min(u128::from(u16::MAX)) as u16);
        if nix::poll::poll(&mut fds, ms).context("waiting for the pause process")? == 0 {
            if Instant::now() >= deadline {
                bail!("the pause process did not report within {REPORT_TIMEOUT:?}");
            }
            continue;
        }
        match f.read(&mut buf[n..]).context("reading the pause process's report")? {
            0 => return Ok(n),
            k => n += k,
        }
        if n == buf.len() {
            return Ok(n);
        }
    }
}

/// The pause process, from its birth: set up, let go of the creator's files, then wait for signals.
fn child(s: &Setup, born_in: bool, null: RawFd, report: RawFd) -> ! {
    // SAFETY: raw system calls on memory made before the fork (`s`, statics, our stack copy), the
    // argv strings being this process's own copy; nothing allocates or takes a lock (a fork of a
    // threaded process must not), and this never returns into the creator's code.
    unsafe {
        let fail = |step: usize| -> ! {
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&(step as i32).to_ne_bytes());
            msg[4..].copy_from_slice(&(*libc::__errno_location()).to_ne_bytes());
            libc::write(report, msg.as_ptr().cast(), msg.len());
            libc::_exit(1)
        };
        let mut signals: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut signals);
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut signals, sig);
        }
        // Blocked, then taken one at a time: no handler, no race with a child that exits first.
        libc::sigprocmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
        if libc::setns(s.netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            fail(0);
        }
        let host = s.hostname.as_bytes();
        if libc::sethostname(host.as_ptr().cast(), host.len()) != 0 {
            fail(1);
        }
        if let (Some((_, procs)), false) = (&s.v2, born_in) {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail(2);
            }
        }
        // By our one thread: the v1 migration that skips the threadgroup lock (see sys/cgroup_fork.rs).
        for t in &s.v1_tasks {
            if libc::write(t.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail(3);
            }
        }
        // Our command line is still `rcon pod create …`: write `rcon pause` over its strings,
        // NUL-padded (setproctitle's way: prctl(PR_SET_MM) needs CAP_SYS_RESOURCE in the first user
        // namespace, which a VM's root may lack).
        if let Some((at, len)) = s.argv.filter(|(_, len)| *len >= CMDLINE.len()) {
            std::ptr::write_bytes(at as *mut u8, 0, len);
            std::ptr::copy_nonoverlapping(CMDLINE.as_ptr(), at as *mut u8, CMDLINE.len());
        }
        // Not holding any directory, terminal or session of whoever started it.
        libc::chdir(c"/".as_ptr());
        if libc::setsid() < 0 {
            fail(4);
        }
        // What is left (waiting for signals, reaping) needs no privilege: hold none, and gain none
        // (it never execs, but no_new_privs makes that a rule; the bounding set only bounds an
        // exec). It lives in the host's mount namespace, where a pod member sharing its pid
        // namespace must not reach it: its full capabilities kept such a member's ptrace out
        // (the tracer must hold what the tracee holds); without them, not being dumpable does,
        // for anyone without CAP_SYS_PTRACE. Made so before the drop, so that it never is both.
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(5);
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            fail(6);
        }
        let header = CapHeader { version: CAP_V3, pid: 0 };
        let none = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
        if libc::syscall(libc::SYS_capset, &header as *const CapHeader, none.as_ptr()) != 0 {
            fail(7);
        }
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        // Every other file of the creator (its locks among them), and the report pipe: EOF says ready.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        loop {
            match libc::sigwaitinfo(&signals, &mut info) {
                libc::SIGTERM | libc::SIGINT => libc::_exit(0),
                // SIGCHLD: collect every exited child without blocking.
                _ => while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {},
            }
        }
    }
}
