//! The cgroup v1 groups that carry the `linux.resources` rcon applies on a
//! v1 or hybrid host (this one): device rules (devices.rs) and the pids
//! limit. Each is `linux.cgroupsPath` (or `rcon/<id>`) under its controller's
//! mount, recorded in state.json before it is made, and joined by the
//! intermediate process so that the init and every `exec` are members before
//! anything of the user's runs. The rest of `linux.resources` is refused
//! (unsupported.rs) until rcon applies it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use oci_spec::runtime::Spec;

use super::{cgroup, devices};

/// Where v1 controller `name` is mounted, if it is.
pub fn controller(name: &str) -> Option<PathBuf> {
    cgroup::find_mount(|fstype, opts| fstype == "cgroup" && opts.split(',').any(|o| o == name))
}

/// The config's pids limit, if it sets one.
pub fn pids_limit(spec: &Spec) -> Option<i64> {
    spec.linux().as_ref()?.resources().as_ref()?.pids().as_ref().map(|p| p.limit())
}

/// One group: its controller, and the writes that configure it.
#[derive(Debug, PartialEq)]
pub struct Group {
    pub controller: &'static str,
    pub writes: Vec<(&'static str, String)>,
}

/// The groups the config needs, in the order they are made.
pub fn groups(spec: &Spec) -> Vec<Group> {
    let mut out = Vec::new();
    if devices::rules(spec).is_some() {
        out.push(Group { controller: "devices", writes: devices::writes(spec) });
    }
    if let Some(limit) = pids_limit(spec) {
        // The spec's 0 or less is "no limit", pids.max's "max".
        let value = if limit > 0 { limit.to_string() } else { "max".into() };
        out.push(Group { controller: "pids", writes: vec![("pids.max", value)] });
    }
    out
}

/// Where each group goes on this host; None for a controller it lacks
/// (unsupported.rs refuses those configs before this runs).
pub fn paths(spec: &Spec, id: &str) -> Vec<(Group, PathBuf)> {
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    groups(spec)
        .into_iter()
        .filter_map(|g| {
            let mount = controller(g.controller)?;
            Some((g, cgroup::path_for(&mount, id, cgroups_path.as_deref())))
        })
        .collect()
}

/// Make the group and write its settings.
pub fn create(group: &Group, path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating cgroup {}", path.display()))?;
    for (file, value) in &group.writes {
        fs::write(path.join(file), value).with_context(|| {
            format!("config.json: field linux.resources.{}: writing {value:?} to {file}", group.controller)
        })?;
    }
    Ok(())
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
        assert_eq!(groups(&spec(serde_json::json!({}))), vec![]);
        let g =
            groups(&spec(serde_json::json!({"pids": {"limit": 64}, "devices": [{"allow": false, "access": "rwm"}]})));
        assert_eq!(g.iter().map(|g| g.controller).collect::<Vec<_>>(), ["devices", "pids"]);
        assert_eq!(g[1].writes, vec![("pids.max", "64".to_string())]);
        let unlimited = groups(&spec(serde_json::json!({"pids": {"limit": -1}})));
        assert_eq!(unlimited[0].writes, vec![("pids.max", "max".to_string())]);
    }
}
