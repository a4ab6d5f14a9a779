//! Container membership through a cgroup v2 directory, as runc does: every
//! process the container starts stays in it, so `ps`, `kill --all` and
//! `delete` find exactly the container's processes (orphans included), and
//! cgroup.kill ends them in one write. On a host without cgroup2, callers
//! fall back to the pid namespace or the process tree.
//! Resource limits are not applied yet; this is the place they will go.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// Where the host has cgroup2 mounted (pure v2 or hybrid layout).
pub fn host_mount() -> Option<PathBuf> {
    find_mount(|fstype, _| fstype == "cgroup2")
}

/// The first mount point whose filesystem type and super options (from
/// /proc/self/mountinfo) satisfy `want`.
pub fn find_mount(want: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split(' ');
        let (fstype, super_opts) = (r.next()?, r.nth(1)?);
        want(fstype, super_opts).then(|| left.split(' ').nth(4).map(PathBuf::from))?
    })
}

/// Open each group's directory (for clone3 or cgroup.procs).
pub fn open_dirs(paths: &[PathBuf]) -> Result<Vec<fs::File>> {
    paths.iter().map(|p| open_dir(p)).collect()
}

/// The cgroup dir for a container: `linux.cgroupsPath` when it is a plain
/// path (systemd's `slice:prefix:name` form is not managed), else `rcon/<id>`.
pub fn path_for(mount: &Path, id: &str, cgroups_path: Option<&Path>) -> PathBuf {
    match cgroups_path.and_then(|p| p.to_str()).filter(|p| !p.contains(':') && !p.contains("..")) {
        Some(p) => mount.join(p.trim_start_matches('/')),
        None => mount.join("rcon").join(id),
    }
}

/// Make the cgroup; one left over by a crash is reused if it is empty.
pub fn create(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if !procs(path).is_empty() {
                bail!("cgroup {} is in use by other processes", path.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(path).with_context(|| format!("creating cgroup {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating cgroup {}", path.display())),
    }
}

/// The cgroup directory, for clone3(CLONE_INTO_CGROUP).
pub fn open_dir(path: &Path) -> Result<fs::File> {
    fs::File::open(path).with_context(|| format!("opening cgroup {}", path.display()))
}

/// The live processes in the cgroup.
pub fn procs(path: &Path) -> Vec<i32> {
    fs::read_to_string(path.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// SIGKILL everything in the cgroup (cgroup.kill, else one by one).
pub fn kill_all(path: &Path) {
    if fs::write(path.join("cgroup.kill"), "1").is_err() {
        for pid in procs(path) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Kill what is left and remove the dir; a missing dir is already done.
pub fn remove(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    kill_all(path);
    let start = Instant::now();
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // EBUSY until the killed processes have really exited.
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e).with_context(|| format!("removing cgroup {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths() {
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(path_for(m, "c1", None), Path::new("/sys/fs/cgroup/rcon/c1"));
        assert_eq!(path_for(m, "c1", Some(Path::new("/pods/c1"))), Path::new("/sys/fs/cgroup/pods/c1"));
        assert_eq!(path_for(m, "c1", Some(Path::new("system.slice:rcon:c1"))), Path::new("/sys/fs/cgroup/rcon/c1"));
        assert_eq!(path_for(m, "c1", Some(Path::new("/../etc"))), Path::new("/sys/fs/cgroup/rcon/c1"));
    }
}
