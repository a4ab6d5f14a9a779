//! The host's cgroup layout: which controllers are v1 hierarchies (and
//! where), and which the cgroup2 root hands down to its children. Read once
//! per rcon process from /proc/self/mountinfo: a create asked for it five
//! times, and reading mountinfo was the largest user-space cost of a `run`.

use std::fs;
use std::path::{Path, PathBuf};

use super::resources::Version;

#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Each v1 hierarchy: its controllers and its mount point.
    pub v1: Vec<(Vec<String>, PathBuf)>,
    /// The cgroup2 mount, if any.
    pub v2: Option<PathBuf>,
    /// The controllers the cgroup2 root offers (its cgroup.controllers):
    /// those not bound to a v1 hierarchy. rcon enables the ones a container
    /// uses on the way down from the root, as runc does.
    pub v2_controllers: Vec<String>,
}

impl Host {
    /// The host's layout, read on first use. The cgroup mounts do not change
    /// under one rcon command (and the init, a fork, shares the copy).
    pub fn probe() -> Host {
        static HOST: std::sync::OnceLock<Host> = std::sync::OnceLock::new();
        HOST.get_or_init(Host::read).clone()
    }

    fn read() -> Host {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut host = Host::default();
        for l in info.lines() {
            let Some((left, right)) = l.split_once(" - ") else { continue };
            let mut r = right.split(' ');
            let (Some(fstype), Some(opts)) = (r.next(), r.nth(1)) else { continue };
            let Some(mount) = left.split(' ').nth(4).map(PathBuf::from) else { continue };
            match fstype {
                "cgroup" => {
                    let ctrls = opts.split(',').filter(|o| !o.contains('=') && *o != "rw" && *o != "ro");
                    host.v1.push((ctrls.map(String::from).collect(), mount));
                }
                "cgroup2" if host.v2.is_none() => host.v2 = Some(mount),
                _ => {}
            }
        }
        if let Some(m) = &host.v2 {
            let offered = fs::read_to_string(m.join("cgroup.controllers")).unwrap_or_default();
            host.v2_controllers = offered.split_whitespace().map(String::from).collect();
        }
        host
    }

    /// Where `controller` lives: a v1 hierarchy wins over cgroup2 (a
    /// controller bound to v1 is not usable in v2 anyway).
    pub fn version(&self, controller: &str) -> Option<Version> {
        if self.v1_mount(controller).is_some() {
            Some(Version::V1)
        } else if self.v2_controllers.iter().any(|c| c == controller) {
            Some(Version::V2)
        } else {
            None
        }
    }

    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1.iter().find(|(c, _)| c.iter().any(|c| c == controller)).map(|(_, m)| m.as_path())
    }
}
