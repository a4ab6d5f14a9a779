//! The container's filesystem view: mounts from config.json under the
//! rootfs, /dev with the standard devices, pivot_root, masked and read-only
//! paths. Runs in the container init, inside its new mount namespace.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, chroot, pivot_root};
use oci_spec::runtime::{Mount, Spec};

/// Mount flags and propagation from the `options` of a mount entry; the rest
/// is passed to the filesystem as data (`mode=755`, `size=65536k`, …).
#[derive(Debug, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

pub fn parse_options(opts: &[String]) -> MountOptions {
    let none = MsFlags::empty();
    let mut m = MountOptions { flags: none, clear: none, propagation: none, data: Vec::new() };
    for o in opts {
        let (set, clear, prop) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty(), MsFlags::empty()),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            other => {
                m.data.push(other.to_string());
                continue;
            }
        };
        m.flags = (m.flags | set) & !clear;
        m.clear |= clear;
        m.propagation |= prop;
    }
    m
}

/// `dest` under `rootfs`, refusing `..` so a mount can never land outside.
pub fn under_root(rootfs: &Path, dest: &Path) -> Result<PathBuf> {
    let mut out = rootfs.to_path_buf();
    for c in dest.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            _ => bail!("mount destination {} must not hold '..'", dest.display()),
        }
    }
    Ok(out)
}

/// Whether the container has a mount namespace of its own. Without one (the
/// spec lets a config leave it out) it shares rcon's: its mounts are made
/// under the rootfs in that namespace, unmounted by delete (`unmount_under`),
/// and it enters the rootfs by chroot, which leaves the namespace's root alone.
fn own_mount_ns(spec: &Spec) -> bool {
    super::spec::creates_namespace(spec, oci_spec::runtime::LinuxNamespaceType::Mount)
}

/// Everything before pivot_root: propagation, the rootfs bind, the mounts, /dev.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    if own_mount_ns(spec) {
        // Nothing we mount may propagate back to the host. The rootfs's own
        // propagation (linux.rootfsPropagation) is set after pivot_root, which
        // refuses a shared new root.
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
            .context("making / rslave")?;
    }
    mount(Some(rootfs), rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .with_context(|| format!("bind-mounting rootfs {}", rootfs.display()))?;
    let mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let new_cgroup_ns = super::spec::creates_namespace(spec, oci_spec::runtime::LinuxNamespaceType::Cgroup);
    for (i, m) in mounts.iter().enumerate() {
        mount_one(rootfs, m, new_cgroup_ns)
            .with_context(|| format!("config.json: field mounts[{i}] ({})", m.destination().display()))?;
    }
    if mounts.iter().any(|m| m.destination() == Path::new("/dev")) {
        populate_dev(rootfs, spec)?;
    }
    Ok(())
}

/// The cgroup mount: a fresh cgroup2 when the container has its own cgroup
/// namespace (the view must be rooted there); otherwise a read-only bind of
/// the host's cgroup2 mount shows the same tree and costs microseconds where
/// a fresh superblock costs ~10 ms. With no cgroup2 anywhere, an empty tmpfs.
fn mount_cgroup(dest: &Path, flags: MsFlags, new_ns: bool) -> Result<()> {
    if new_ns && mount(Some("cgroup2"), dest, Some("cgroup2"), flags, None::<&str>).is_ok() {
        return Ok(());
    }
    if let Some(host) = super::cgroup::host_mount() {
        mount(Some(host.as_path()), dest, None::<&str>, MsFlags::MS_BIND, None::<&str>).context("binding cgroup2")?;
        let ro = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | (flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC));
        return mount(None::<&str>, dest, None::<&str>, ro, None::<&str>).context("remounting cgroup2 read-only");
    }
    mount(Some("tmpfs"), dest, Some("tmpfs"), flags, None::<&str>).context("mounting cgroup placeholder")
}

fn mount_one(rootfs: &Path, m: &Mount, new_cgroup_ns: bool) -> Result<()> {
    let dest = under_root(rootfs, m.destination())?;
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("none");
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    if is_bind {
        let src = m.source().as_deref().context("bind mount without source")?;
        if src.is_dir() {
            fs::create_dir_all(&dest)?;
        } else {
            fs::create_dir_all(dest.parent().unwrap_or(rootfs))?;
            if !dest.exists() {
                fs::File::create(&dest)?;
            }
        }
        let rec = opts.flags & MsFlags::MS_REC;
        mount(Some(src), &dest, None::<&str>, MsFlags::MS_BIND | rec, None::<&str>)
            .with_context(|| format!("bind {}", src.display()))?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            mount(
                None::<&str>,
                &dest,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rec | extra,
                None::<&str>,
            )
            .context("remounting bind mount with its options")?;
        }
    } else {
        fs::create_dir_all(&dest)?;
        let data = opts.data.join(",");
        let data = (!data.is_empty()).then_some(data.as_str());
        let src = m.source().as_deref().map(|p| p.as_os_str()).unwrap_or(typ.as_ref());
        if typ == "cgroup" {
            mount_cgroup(&dest, opts.flags, new_cgroup_ns)?;
        } else {
            mount(Some(src), &dest, Some(typ), opts.flags, data).with_context(|| format!("mounting {typ}"))?;
        }
    }
    if !opts.propagation.is_empty() {
        mount(None::<&str>, &dest, None::<&str>, opts.propagation, None::<&str>).context("setting propagation")?;
    }
    Ok(())
}

/// The standard devices, the config's devices and the usual /dev symlinks.
fn populate_dev(rootfs: &Path, spec: &Spec) -> Result<()> {
    let dev = rootfs.join("dev");
    let std_devs = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
    for (name, major, minor) in std_devs {
        let host = Path::new("/dev").join(name);
        make_device(&dev.join(name), &host, SFlag::S_IFCHR, major, minor, 0o666, 0, 0)?;
    }
    let extra = spec.linux().as_ref().and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    for d in extra {
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => SFlag::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let path = under_root(rootfs, d.path())?;
        let mode = d.file_mode().unwrap_or(0o666);
        make_device(
            &path,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )
        .with_context(|| format!("config.json: field linux.devices ({})", d.path().display()))?;
    }
    let links = [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    for (target, name) in links {
        let p = dev.join(name);
        if fs::symlink_metadata(&p).is_err() {
            symlink(target, &p).with_context(|| format!("symlink {}", p.display()))?;
        }
    }
    Ok(())
}

/// mknod the device; inside a user namespace, where mknod is not allowed,
/// bind-mount the host's node instead (as runc does).
#[allow(clippy::too_many_arguments)]
fn make_device(
    path: &Path,
    host: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let _ = fs::remove_file(path);
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    match mknod(path, kind, perm, makedev(major, minor)) {
        Err(nix::errno::Errno::EPERM) => {
            fs::File::create(path)?;
            return mount(Some(host), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .with_context(|| format!("bind-mounting {} (mknod is not allowed here)", host.display()));
        }
        r => r.with_context(|| format!("mknod {}", path.display()))?,
    }
    // mknod honours the umask; set the exact mode asked for.
    nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, path, perm, nix::sys::stat::FchmodatFlags::FollowSymlink)?;
    nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))?;
    Ok(())
}

/// Make `rootfs` the root: pivot_root, or chroot after MS_MOVE with
/// `no_pivot`, or a bare chroot in a mount namespace shared with rcon.
pub fn enter(spec: &Spec, rootfs: &Path, no_pivot: bool) -> Result<()> {
    chdir(rootfs).with_context(|| format!("chdir {}", rootfs.display()))?;
    if !own_mount_ns(spec) {
        chroot(".").context("chroot")?;
    } else if no_pivot {
        mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).context("moving rootfs to /")?;
        chroot(".").context("chroot")?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one;
        // unmounting "." then drops the old root without a temp directory.
        pivot_root(".", ".").context("pivot_root")?;
        mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
            .context("making old root rslave")?;
        umount2(".", MntFlags::MNT_DETACH).context("detaching old root")?;
    }
    chdir("/").context("chdir /")?;
    Ok(())
}

/// After pivot_root: masked paths, read-only paths and a read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux.and_then(|l| l.masked_paths().as_deref()).unwrap_or(&[]) {
        mask(Path::new(p)).with_context(|| format!("masking {p}"))?;
    }
    for p in linux.and_then(|l| l.readonly_paths().as_deref()).unwrap_or(&[]) {
        readonly(Path::new(p)).with_context(|| format!("making {p} read-only"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).context("remounting / read-only")?;
    }
    // Last, so that the bind mounts above are not refused by an unbindable root.
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        let prop = parse_options(&[p.to_string()]).propagation;
        if prop.is_empty() {
            bail!("config.json: field linux.rootfsPropagation: {p:?} is not shared, slave, private or unbindable");
        }
        mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
            .context("config.json: field linux.rootfsPropagation")?;
    }
    Ok(())
}

/// Unmount everything mounted at or under `root` in rcon's mount namespace,
/// deepest first: the mounts of a container that had no mount namespace.
pub fn unmount_under(root: &Path) -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape).filter(|p| p.starts_with(root)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", p.display())),
        }
    }
    Ok(())
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct =
            b.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

fn mask(p: &Path) -> Result<()> {
    let Ok(meta) = fs::metadata(p) else {
        return Ok(());
    };
    if meta.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)?;
    } else {
        mount(Some("/dev/null"), p, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    }
    Ok(())
}

fn readonly(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    mount(Some(p), p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o: Vec<String> =
            ["nosuid", "strictatime", "mode=755", "size=65536k", "rprivate"].map(String::from).to_vec();
        let m = parse_options(&o);
        assert_eq!(m.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(m.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(m.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn later_options_win() {
        let o: Vec<String> = ["ro", "rw"].map(String::from).to_vec();
        assert!(!parse_options(&o).flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b/c"), Path::new("/a b/c"));
        assert_eq!(unescape("/plain"), Path::new("/plain"));
    }

    #[test]
    fn destinations_stay_under_root() {
        let r = Path::new("/b/rootfs");
        assert_eq!(under_root(r, Path::new("/proc")).unwrap(), Path::new("/b/rootfs/proc"));
        assert_eq!(under_root(r, Path::new("dev/pts")).unwrap(), Path::new("/b/rootfs/dev/pts"));
        assert!(under_root(r, Path::new("/../etc")).is_err());
    }
}
