//! A pod's cgroup, laid out as the kubelet lays out `kubepods/pod<UID>`:
//! one group (`rcon/pod-<id>`) under cgroup2 and under each v1 hierarchy
//! that the pod's limits write to. The limits are written there, so they
//! bind everything below it together. The pause process sits in a `pause`
//! child, because a cgroup2 group that hands controllers down to its
//! children may hold no process itself. Each member container's groups
//! nest beside it (`rcon/pod-<id>/<container id>`), and a member with no
//! limit of its own still joins the pod's v1 hierarchies, or the pod's
//! limits would not reach it there.
//!
//! Only the engine knows pods: the runtime asks it through `ParentHook`
//! which pod's group a container being created nests in.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, Result};
use oci_spec::runtime::{LinuxResources, Spec};

use super::resources::{self, Version, Write};
use super::{apply, Host};
use crate::Context;

/// The child group of the pod's that holds the pause process.
pub const PAUSE: &str = "pause";

/// A pod's groups and their settings, worked out (and checked against the
/// host) before any is made.
#[derive(Debug)]
pub struct Plan {
    v2_mount: Option<PathBuf>,
    v2: Option<PathBuf>,
    v2_writes: Vec<Write>,
    /// Each v1 group: controller, hierarchy mount, dir, settings.
    v1: Vec<(String, PathBuf, PathBuf, Vec<Write>)>,
}

impl Plan {
    /// On this host (read now).
    pub fn probe(rel: &Path, r: &LinuxResources) -> std::result::Result<Plan, String> {
        Plan::new(rel, r, &Host::probe())
    }

    /// `rel` is the pod's path below each hierarchy's root. The error is the
    /// field the host cannot apply, without a prefix.
    pub fn new(rel: &Path, r: &LinuxResources, host: &Host) -> std::result::Result<Plan, String> {
        let writes = resources::plan(r, &|c| host.version(c))?;
        let mut v1: Vec<(String, PathBuf, PathBuf, Vec<Write>)> = Vec::new();
        for w in writes.iter().filter(|w| w.version == Version::V1) {
            match v1.iter_mut().find(|g| g.0 == w.controller) {
                Some(g) => g.3.push(w.clone()),
                None => {
                    let Some(mount) = host.v1_mount(&w.controller) else { continue };
                    v1.push((w.controller.clone(), mount.to_path_buf(), mount.join(rel), vec![w.clone()]));
                }
            }
        }
        Ok(Plan {
            v2: host.v2.as_ref().map(|m| m.join(rel)),
            v2_mount: host.v2.clone(),
            v2_writes: writes.into_iter().filter(|w| w.version == Version::V2).collect(),
            v1,
        })
    }

    /// Every dir the pod will have: the cgroup2 one first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.v2.iter().cloned().chain(self.v1.iter().map(|g| g.2.clone())).collect()
    }

    /// The v1 controllers the pod limits, which its members must join.
    pub fn controllers(&self) -> Vec<String> {
        self.v1.iter().map(|g| g.0.clone()).collect()
    }

    /// Make the groups, write the limits, and make the pause process's child.
    pub fn make(&self) -> Result<()> {
        if let (Some(mount), Some(dir)) = (&self.v2_mount, &self.v2) {
            super::create(dir)?;
            if !self.v2_writes.is_empty() {
                let mut ctrls: Vec<&str> = self.v2_writes.iter().map(|w| w.controller.as_str()).collect();
                ctrls.dedup();
                apply::enable_v2(mount, dir, &ctrls)?;
                apply::write_all(dir, &self.v2_writes)?;
            }
            super::create(&dir.join(PAUSE))?;
        }
        for (controller, mount, dir, writes) in &self.v1 {
            apply::make_v1(mount, dir, controller)?;
            apply::write_all(dir, writes)?;
            apply::make_v1(mount, &dir.join(PAUSE), controller)?;
        }
        Ok(())
    }
}

/// The `pause` child of the pod's groups, where the pause process is born:
/// the cgroup2 one, and the v1 ones.
pub fn pause_dirs(plan: &Plan) -> (Option<PathBuf>, Vec<PathBuf>) {
    (plan.v2.as_ref().map(|d| d.join(PAUSE)), plan.v1.iter().map(|g| g.2.join(PAUSE)).collect())
}

/// Remove each dir with everything below it, innermost first, killing
/// what is left in each group; a dir already gone is done.
pub fn remove(dirs: &[PathBuf]) -> Result<()> {
    for d in dirs {
        remove_tree(d)?;
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<()> {
    let children = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading cgroup {}", dir.display())),
    };
    for e in children.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    super::remove(dir)
}

/// The pod group a container nests in: its path below each hierarchy's
/// root, and the v1 controllers the pod limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub rel: PathBuf,
    pub controllers: Vec<String>,
}

/// How the runtime learns a container's pod (the engine implements it).
pub trait ParentHook: Send + Sync {
    /// The pod group of a container with these annotations, if it has one.
    fn parent(&self, ctx: &Context, annotations: &HashMap<String, String>) -> Result<Option<Parent>>;
}

static HOOK: OnceLock<Box<dyn ParentHook>> = OnceLock::new();

/// Install the hook (once per process; later calls change nothing).
pub fn install(hook: Box<dyn ParentHook>) {
    let _ = HOOK.set(hook);
}

/// Place a pod member inside its pod's group: its `linux.cgroupsPath`
/// becomes `<pod>/<id>` (so `update` and the state follow it) and the v1
/// controllers it must join come back. A config that names its own
/// cgroupsPath stays where it says.
pub(crate) fn place(ctx: &Context, id: &str, spec: &mut Spec) -> Result<Vec<String>> {
    let (Some(hook), Some(linux)) = (HOOK.get(), spec.linux()) else { return Ok(Vec::new()) };
    if linux.cgroups_path().is_some() {
        return Ok(Vec::new());
    }
    let Some(ann) = spec.annotations() else { return Ok(Vec::new()) };
    let Some(parent) = hook.parent(ctx, ann)? else { return Ok(Vec::new()) };
    let mut linux = linux.clone();
    linux.set_cgroups_path(Some(member_path(&parent.rel, id)));
    spec.set_linux(Some(linux));
    Ok(parent.controllers)
}

/// A member's cgroupsPath: absolute, so that it is read from each
/// hierarchy's root.
pub fn member_path(rel: &Path, id: &str) -> PathBuf {
    Path::new("/").join(rel).join(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_v1() -> Host {
        Host {
            v1: vec![
                (vec!["memory".into()], PathBuf::from("/cg/memory")),
                (vec!["pids".into()], PathBuf::from("/cg/pids")),
                (vec!["cpu".into(), "cpuacct".into()], PathBuf::from("/cg/cpu,cpuacct")),
            ],
            v2: Some(PathBuf::from("/cg/unified")),
            v2_controllers: vec![],
        }
    }

    fn resources(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_pod_has_a_group_per_limited_hierarchy() {
        let r = resources(serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}}));
        let plan = Plan::new(Path::new("rcon/pod-p1"), &r, &host_v1()).unwrap();
        assert_eq!(
            plan.dirs(),
            ["/cg/unified/rcon/pod-p1", "/cg/memory/rcon/pod-p1", "/cg/pids/rcon/pod-p1"].map(PathBuf::from)
        );
        assert_eq!(plan.controllers(), ["memory", "pids"]);
        assert_eq!(plan.v1[1].3[0].file, "pids.max");
        assert!(plan.v2_writes.is_empty());
        // No limits: the cgroup2 dir alone, which holds the pod's processes.
        let plan = Plan::new(Path::new("rcon/pod-p1"), &LinuxResources::default(), &host_v1()).unwrap();
        assert_eq!(plan.dirs(), [PathBuf::from("/cg/unified/rcon/pod-p1")]);
    }

    #[test]
    fn on_pure_v2_the_limits_go_to_the_one_dir() {
        let host = Host {
            v1: vec![],
            v2: Some(PathBuf::from("/cg")),
            v2_controllers: vec!["memory".into(), "pids".into(), "cpu".into()],
        };
        let r =
            resources(serde_json::json!({"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}}));
        let plan = Plan::new(Path::new("rcon/pod-p2"), &r, &host).unwrap();
        assert_eq!(plan.dirs(), [PathBuf::from("/cg/rcon/pod-p2")]);
        assert!(plan.controllers().is_empty());
        let files: Vec<&str> = plan.v2_writes.iter().map(|w| w.file.as_str()).collect();
        assert_eq!(files, ["memory.max", "cpu.max"]);
    }

    #[test]
    fn what_the_host_lacks_is_refused() {
        let host = Host { v1: vec![], v2: Some(PathBuf::from("/cg")), v2_controllers: vec![] };
        let r = resources(serde_json::json!({"pids": {"limit": 5}}));
        let e = Plan::new(Path::new("rcon/pod-p3"), &r, &host).unwrap_err();
        assert!(e.contains("pids"), "{e}");
    }

    #[test]
    fn members_nest_below_the_pod() {
        assert_eq!(member_path(Path::new("rcon/pod-p1"), "c1"), Path::new("/rcon/pod-p1/c1"));
    }
}
