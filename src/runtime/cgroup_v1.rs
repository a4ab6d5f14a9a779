//! The cgroup v1 groups that carry `linux.resources` on a v1 or hybrid host
//! (this one): device rules (devices.rs) and one group per controller that
//! the config's limits write to (cgroup/resources.rs). Each is `linux.cgroupsPath` (or `rcon/<id>`) under its controller's
//! mount, recorded in state.json before it is made, and joined before
//! anything of the user's runs: rcon moves the init in while the init sets
//! up its mounts (container.rs), and an `exec`'s intermediate joins itself. A controller with nothing to write is not
//! joined: the container's cgroup2 dir already accounts its cpu time.

use std::path::{Path, PathBuf};

use anyhow::Result;
use oci_spec::runtime::Spec;

use super::cgroup::{self, apply, resources::Version, resources::Write, Host};
use super::devices;

/// Where v1 controller `name` is mounted, if it is.
pub fn controller(name: &str) -> Option<PathBuf> {
    Host::probe().v1_mount(name).map(Path::to_path_buf)
}

/// One group: its controller, and the writes that configure it.
#[derive(Debug, PartialEq)]
pub struct Group {
    pub controller: String,
    pub writes: Vec<Write>,
}

/// The groups the config needs, in the order they are made: device rules
/// first, then one per controller that `plan` (resources.rs) writes to.
pub fn groups(spec: &Spec, plan: &[Write]) -> Vec<Group> {
    let mut out = Vec::new();
    if devices::rules(spec).is_some() {
        let writes = devices::writes(spec)
            .into_iter()
            .map(|(file, value)| Write {
                version: Version::V1,
                controller: "devices".into(),
                file: file.into(),
                value,
                field: "devices".into(),
            })
            .collect();
        out.push(Group { controller: "devices".into(), writes });
    }
    for w in plan.iter().filter(|w| w.version == Version::V1) {
        match out.iter_mut().find(|g| g.controller == w.controller) {
            Some(g) => g.writes.push(w.clone()),
            None => out.push(Group { controller: w.controller.clone(), writes: vec![w.clone()] }),
        }
    }
    out
}

/// Where each group goes on this host, under its hierarchy's mount; the
/// `join` controllers get a group with nothing to write if they have none.
pub fn paths(spec: &Spec, id: &str, host: &Host, plan: &[Write], join: &[String]) -> Vec<(Group, PathBuf, PathBuf)> {
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let mut all = groups(spec, plan);
    for c in join {
        if !all.iter().any(|g| g.controller == *c) {
            all.push(Group { controller: c.clone(), writes: Vec::new() });
        }
    }
    all.into_iter()
        .filter_map(|g| {
            let mount = host.v1_mount(&g.controller)?.to_path_buf();
            let path = cgroup::path_for(&mount, id, cgroups_path.as_deref());
            Some((g, mount, path))
        })
        .collect()
}

/// Make the group and write its settings.
pub fn create(group: &Group, mount: &Path, path: &Path) -> Result<()> {
    apply::make_v1(mount, path, &group.controller)?;
    apply::write_all(path, &group.writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: serde_json::Value) -> Spec {
        let mut v = serde_json::to_value(super::super::spec::default_spec()).unwrap();
        v["linux"]["resources"] = resources;
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn groups_follow_the_config() {
        let s = spec(serde_json::json!({}));
        assert_eq!(groups(&s, &[]), vec![]);
        let s = spec(
            serde_json::json!({"pids": {"limit": 64}, "memory": {"limit": 1048576}, "devices": [{"allow": false, "access": "rwm"}]}),
        );
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let plan = super::super::cgroup::resources::plan(r, &|_| Some(Version::V1)).unwrap();
        let g = groups(&s, &plan);
        assert_eq!(g.iter().map(|g| g.controller.as_str()).collect::<Vec<_>>(), ["devices", "memory", "pids"]);
        assert_eq!((g[2].writes[0].file.as_str(), g[2].writes[0].value.as_str()), ("pids.max", "64"));
        // v2 writes go to the cgroup2 dir, not to a v1 group.
        let plan = super::super::cgroup::resources::plan(r, &|_| Some(Version::V2)).unwrap();
        assert_eq!(groups(&s, &plan).len(), 1);
    }

    #[test]
    fn a_pod_member_joins_the_pods_hierarchies() {
        let mut s = spec(serde_json::json!({"pids": {"limit": 64}}));
        let mut linux = s.linux().clone().unwrap();
        linux.set_cgroups_path(Some("/rcon/pod-p/c1".into()));
        s.set_linux(Some(linux));
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        let plan = super::super::cgroup::resources::plan(&r, &|_| Some(Version::V1)).unwrap();
        let host = Host {
            v1: vec![
                (vec!["memory".into()], PathBuf::from("/cg/memory")),
                (vec!["pids".into()], PathBuf::from("/cg/pids")),
            ],
            ..Default::default()
        };
        let got = paths(&s, "c1", &host, &plan, &["memory".into(), "pids".into()]);
        let dirs: Vec<(&str, usize, &Path)> =
            got.iter().map(|(g, _, p)| (g.controller.as_str(), g.writes.len(), p.as_path())).collect();
        // pids keeps its limit; memory is joined with nothing to write.
        assert_eq!(
            dirs,
            [("pids", 1, Path::new("/cg/pids/rcon/pod-p/c1")), ("memory", 0, Path::new("/cg/memory/rcon/pod-p/c1"))]
        );
    }
}
