//! Named network namespaces, on the same on-disk contract as `ip netns`.
//!
//! A name is a file in the netns dir (default /var/run/netns) with the
//! namespace's nsfs inode bind-mounted on it; the mount keeps the namespace
//! alive with no process in it. The dir itself is made a shared mount point,
//! so that a name added later also appears in mount namespaces copied from
//! this one (containers, `ip netns exec` shells) and vice versa. Files made
//! here and by `ip netns` are interchangeable.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

pub use crate::sys::ns::{enter, NetnsGuard};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxNamespaceType;

use crate::store;
use crate::sys::ns::check_ns_file;

/// The file that holds the name `name` (no validation: see `open`).
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Create `dir` and make it a shared mount point, as `ip netns add` does.
///
/// Serialised with an flock on the directory itself (a lock file inside would
/// show up as a namespace name), so two racing callers cannot both bind-mount
/// the dir onto itself and stack two mounts.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let _lock = store::lock_file(handle).with_context(|| format!("locking {}", dir.display()))?;
    make_shared(dir)
}

fn make_shared(dir: &Path) -> Result<()> {
    let shared = || mount(None::<&str>, dir, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match shared() {
        // EINVAL: not a mount point yet; make it one by binding it onto itself.
        Err(Errno::EINVAL) => {
            mount(Some(dir), dir, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .with_context(|| format!("bind-mounting {} onto itself", dir.display()))?;
            shared().with_context(|| format!("making {} a shared mount", dir.display()))
        }
        r => r.with_context(|| format!("making {} a shared mount", dir.display())),
    }
}

/// Create a new, empty network namespace named `name`; returns its file.
pub fn add(dir: &Path, name: &str) -> Result<PathBuf> {
    bind_new(dir, name, |file| {
        let file = file.to_path_buf();
        // unshare(CLONE_NEWNET) moves only the calling thread: do it on a
        // thread of its own that dies right after, so no caller thread (nor a
        // reused pool thread) is left in the new namespace.
        std::thread::spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
            bind(Path::new("/proc/thread-self/ns/net"), &file)
        })
        .join()
        .map_err(|_| anyhow!("the thread creating the namespace panicked"))?
        .with_context(|| format!("netns add {name}"))
    })
}

/// Name the network namespace of a running process, like `ip netns attach`.
pub fn attach(dir: &Path, name: &str, pid: i32) -> Result<PathBuf> {
    // Open the namespace first: it stays pinned even if `pid` exits (or is
    // reused) before the bind mount, which then goes through our own fd.
    let proc_ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    if !proc_ns.exists() {
        bail!("netns attach {name}: process {pid} does not exist");
    }
    let ns = check_ns_file(&proc_ns, LinuxNamespaceType::Network)?;
    let src = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
    bind_new(dir, name, |file| bind(&src, file).with_context(|| format!("netns attach {name}")))
}

/// Create the empty file for `name`, let `mount_on` bind a namespace onto it,
/// and remove the file again if that fails.
fn bind_new(dir: &Path, name: &str, mount_on: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    store::validate_id("netns", name)?;
    ensure_dir(dir)?;
    let file = path(dir, name);
    // O_EXCL makes "exists" atomic: two racing adds of one name cannot both win.
    match fcntl::open(&file, OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => drop(fd),
        Err(Errno::EEXIST) => return Err(crate::error::Error::Exists(format!("netns {name} already exists")).into()),
        Err(e) => return Err(e).with_context(|| format!("creating {}", file.display())),
    }
    if let Err(e) = mount_on(&file) {
        let _ = fs::remove_file(&file);
        return Err(e);
    }
    Ok(file)
}

fn bind(src: &Path, target: &Path) -> Result<()> {
    mount(Some(src), target, Some("none"), MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("bind-mounting {} onto {}", src.display(), target.display()))
}

/// Remove a name. Processes still in the namespace keep it (it lives on
/// with them, nameless), exactly as after `ip netns delete`.
pub fn delete(dir: &Path, name: &str) -> Result<()> {
    store::validate_id("netns", name)?;
    let file = path(dir, name);
    if let Err(e) = fs::symlink_metadata(&file) {
        return Err(not_found(name, e));
    }
    // EINVAL: nothing mounted (a stale name); still remove the file.
    match umount2(&file, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(e).with_context(|| format!("netns delete {name}: unmounting {}", file.display())),
    }
    fs::remove_file(&file).map_err(|e| not_found(name, e))
}

fn not_found(name: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == ErrorKind::NotFound {
        crate::error::Error::NotFound(format!("netns {name} does not exist")).into()
    } else {
        anyhow!("netns {name}: {e}")
    }
}

/// The names in `dir`, sorted; dotfiles are skipped and a missing dir is empty.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Open a name, checking that a network namespace is really mounted on it.
pub fn open(dir: &Path, name: &str) -> Result<File> {
    store::validate_id("netns", name)?;
    let file = path(dir, name);
    if let Err(e) = fs::symlink_metadata(&file) {
        return Err(not_found(name, e));
    }
    check_ns_file(&file, LinuxNamespaceType::Network).with_context(|| format!("netns {name}"))
}

/// (st_dev, st_ino) identify a namespace: the nsfs inode behind the file.
fn ns_id(p: &Path) -> std::io::Result<(u64, u64)> {
    fs::metadata(p).map(|m| (m.dev(), m.ino()))
}

/// The names under which the network namespace of `pid` is known.
pub fn identify(dir: &Path, pid: i32) -> Result<Vec<String>> {
    let proc_ns = format!("/proc/{pid}/ns/net");
    let target = ns_id(Path::new(&proc_ns)).with_context(|| format!("process {pid}"))?;
    let names = list(dir)?;
    Ok(names.into_iter().filter(|n| ns_id(&path(dir, n)).ok() == Some(target)).collect())
}

/// The processes (not threads) that are in the namespace `name`, sorted.
pub fn pids(dir: &Path, name: &str) -> Result<Vec<i32>> {
    let ns = open(dir, name)?;
    let meta = ns.metadata()?;
    let target = (meta.dev(), meta.ino());
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").context("reading /proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // Processes may exit while we look; unreadable ones are skipped.
        if ns_id(&entry.path().join("ns/net")).ok() == Some(target) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_leave_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("netns");
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", "-x", "a b"] {
            let err = add(&dir, bad).unwrap_err();
            assert!(format!("{err:#}").contains("netns"), "{bad:?}: {err:#}");
            assert!(attach(&dir, bad, std::process::id() as i32).is_err(), "{bad:?}");
            assert!(delete(&dir, bad).is_err(), "{bad:?}");
        }
        // Validation comes before any side effect: not even the dir exists.
        assert!(!dir.exists());
    }

    #[test]
    fn list_sorts_and_skips_dotfiles() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["b", "a", ".lock", "c.1"] {
            fs::write(tmp.path().join(f), "").unwrap();
        }
        assert_eq!(list(tmp.path()).unwrap(), ["a", "b", "c.1"]);
        assert!(list(&tmp.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn missing_and_fake_names() {
        let tmp = tempfile::tempdir().unwrap();
        let msg = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert_eq!(msg(delete(tmp.path(), "nope")), "netns nope does not exist");
        assert_eq!(msg(open(tmp.path(), "nope").map(drop)), "netns nope does not exist");
        // A plain file is a stale name, not a namespace.
        fs::write(tmp.path().join("plain"), "").unwrap();
        assert!(msg(open(tmp.path(), "plain").map(drop)).contains("is not a net namespace"));
        assert!(identify(tmp.path(), std::process::id() as i32).unwrap().is_empty());
        assert_eq!(path(tmp.path(), "x"), tmp.path().join("x"));
    }
}
