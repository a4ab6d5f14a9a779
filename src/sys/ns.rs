//! Namespace files: what kind of namespace a file is, and moving the
//! calling thread into a network namespace and back.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::LinuxNamespaceType;

/// The /proc/PID/ns file name of a namespace type.
pub fn ns_proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Open a namespace file and check that it is a namespace of type `typ`.
pub fn check_ns_file(path: &Path, typ: LinuxNamespaceType) -> Result<File> {
    let f = File::open(path).with_context(|| format!("{}", path.display()))?;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3): returns the CLONE_NEW* type of the file.
    // SAFETY: the fd is open for the whole call, and this ioctl takes no argument (nothing is read or
    // written through a pointer); on a file that is no namespace it fails with ENOTTY.
    let got = unsafe { libc::ioctl(f.as_raw_fd(), 0xb703 as _) };
    if got < 0 || got != typ as i32 {
        bail!("{} is not a {} namespace", path.display(), ns_proc_name(typ));
    }
    Ok(f)
}

/// While alive, the current thread is in another network namespace.
///
/// `setns` acts on the calling thread only, so this is for dedicated threads
/// (a `std::thread` spawned for the job), never for a tokio worker or any
/// thread that other code may run on meanwhile. The guard is `!Send`: it must
/// be dropped on the thread it was made on. Dropping it restores the thread's
/// original namespace; if even that fails the thread is unusable, so it panics.
pub struct NetnsGuard {
    orig: File,
    _not_send: PhantomData<*const ()>,
}

/// Move the current thread into the network namespace `ns` (see `NetnsGuard`).
pub fn enter<F: AsFd>(ns: F) -> Result<NetnsGuard> {
    let orig = File::open("/proc/thread-self/ns/net").context("opening /proc/thread-self/ns/net")?;
    setns(ns, CloneFlags::CLONE_NEWNET).context("setns(CLONE_NEWNET)")?;
    Ok(NetnsGuard { orig, _not_send: PhantomData })
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.orig, CloneFlags::CLONE_NEWNET) {
            tracing::error!("cannot restore the thread's network namespace: {e}");
            if !std::thread::panicking() {
                panic!("cannot restore the thread's network namespace: {e}");
            }
        }
    }
}
