//! Container membership through a cgroup v2 directory, as runc does: every
//! process the container starts stays in it, so `ps`, `kill --all` and
//! `delete` find exactly the container's processes (orphans included), and
//! cgroup.kill ends them in one write. On a host without cgroup2, callers
//! fall back to the pid namespace or the process tree.
//!
//! `linux.resources` is applied through `Setup`: resources.rs turns the
//! config into writes per controller and layout (host.rs), apply.rs makes
//! the groups and writes them, stats.rs reads them back.

pub mod apply;
mod convert;
pub mod host;
pub mod resources;
pub mod sandbox;
pub mod stats;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use oci_spec::runtime::{LinuxResources, Spec};

pub use host::Host;
use resources::{Version, Write};

/// A container's cgroups and their settings, worked out (and the config
/// checked against the host) before any group is made.
pub struct Setup {
    /// The cgroup2 dir that holds every process of the container.
    pub v2_dir: Option<PathBuf>,
    v2_mount: Option<PathBuf>,
    v2_writes: Vec<Write>,
    /// The v1 groups: settings, hierarchy mount, dir.
    pub v1: Vec<(super::cgroup_v1::Group, PathBuf, PathBuf)>,
}

/// The config's `linux.resources`, if any.
pub fn resources_of(spec: &Spec) -> Option<&LinuxResources> {
    spec.linux().as_ref()?.resources().as_ref()
}

/// The writes for `r` on `host`, or the one-line refusal.
pub fn plan(r: &LinuxResources, host: &Host) -> Result<Vec<Write>> {
    resources::plan(r, &|c| host.version(c)).map_err(|e| anyhow!("config.json: {e}"))
}

impl Setup {
    /// `join`: v1 controllers to join even with nothing to write (a pod's).
    pub fn new(spec: &Spec, id: &str, join: &[String]) -> Result<Setup> {
        let host = Host::probe();
        let writes = resources_of(spec).map(|r| plan(r, &host)).transpose()?.unwrap_or_default();
        let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        let v2_dir = host.v2.as_ref().map(|m| path_for(m, id, cgroups_path.as_deref()));
        let v1 = super::cgroup_v1::paths(spec, id, &host, &writes, join);
        let v2_writes = writes.into_iter().filter(|w| w.version == Version::V2).collect();
        Ok(Setup { v2_dir, v2_mount: host.v2, v2_writes, v1 })
    }

    pub fn v1_dirs(&self) -> Vec<PathBuf> {
        self.v1.iter().map(|(_, _, p)| p.clone()).collect()
    }

    /// Once the cgroup2 dir is made: its settings, then the v1 groups.
    pub fn apply(&self) -> Result<()> {
        if let (Some(mount), Some(dir), false) = (&self.v2_mount, &self.v2_dir, self.v2_writes.is_empty()) {
            let mut ctrls: Vec<&str> = self.v2_writes.iter().map(|w| w.controller.as_str()).collect();
            ctrls.dedup();
            apply::enable_v2(mount, dir, &ctrls)?;
            apply::write_all(dir, &self.v2_writes)?;
        }
        for (group, mount, path) in &self.v1 {
            super::cgroup_v1::create(group, mount, path)?;
        }
        Ok(())
    }
}

/// Where the host has cgroup2 mounted (pure v2 or hybrid layout).
pub fn host_mount() -> Option<PathBuf> {
    Host::probe().v2
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

/// How group `path` stands to group `other`, when the two nest: the kernel
/// kills and limits a whole subtree, so nested groups are never independent.
pub fn nesting(path: &Path, other: &Path) -> Option<&'static str> {
    if path == other {
        Some("is the cgroup")
    } else if path.starts_with(other) {
        Some("is inside the cgroup")
    } else if other.starts_with(path) {
        Some("holds the cgroup")
    } else {
        None
    }
}

/// The groups this process is in, as directories: the v2 one (`0::/path`)
/// and each mounted v1 hierarchy's, from /proc/self/cgroup.
pub fn own_paths() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(hier), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        let rel = path.trim_start_matches('/');
        if hier == "0" && ctrls.is_empty() {
            out.extend(host_mount().map(|m| m.join(rel)));
        } else {
            out.extend(ctrls.split(',').filter_map(super::cgroup_v1::controller).map(|m| m.join(rel)));
        }
    }
    out
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
    fn nested_groups_are_found_both_ways() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(nesting(&p("/cg/a"), &p("/cg/a")), Some("is the cgroup"));
        assert_eq!(nesting(&p("/cg/a/b"), &p("/cg/a")), Some("is inside the cgroup"));
        assert_eq!(nesting(&p("/cg/a"), &p("/cg/a/b/c")), Some("holds the cgroup"));
        // Components, not string prefixes: /cg/ab is beside /cg/a.
        assert_eq!(nesting(&p("/cg/ab"), &p("/cg/a")), None);
        assert_eq!(nesting(&p("/cg/a"), &p("/cg/b")), None);
    }

    #[test]
    fn cgroup_paths() {
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(path_for(m, "c1", None), Path::new("/sys/fs/cgroup/rcon/c1"));
        assert_eq!(path_for(m, "c1", Some(Path::new("/pods/c1"))), Path::new("/sys/fs/cgroup/pods/c1"));
        assert_eq!(path_for(m, "c1", Some(Path::new("system.slice:rcon:c1"))), Path::new("/sys/fs/cgroup/rcon/c1"));
        assert_eq!(path_for(m, "c1", Some(Path::new("/../etc"))), Path::new("/sys/fs/cgroup/rcon/c1"));
    }
}
