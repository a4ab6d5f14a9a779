//! Namespace files: what kind of namespace a file is.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
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
