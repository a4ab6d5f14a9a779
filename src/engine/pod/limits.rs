//! A pod's cgroup and its limits (`pod create --memory … --cpus …`). The
//! flags are checked as `rcon run`'s are (engine::confine), the groups are
//! made by runtime::cgroup::sandbox, and a member container finds its
//! pod's group through the runtime's `ParentHook`, implemented here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::engine::confine::{self, Confinement, Flags};
use crate::runtime::pod_cgroup::{self as sandbox, Parent, ParentHook, Plan};
use crate::Context;

/// The pod's groups, as its record keeps them and `pod inspect` shows them
/// (Podman's `pod inspect` names, 0 for no limit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cgroup {
    /// Below each hierarchy's root: `rcon/pod-<id>`.
    pub cgroup_path: PathBuf,
    /// Every dir, the cgroup2 one first; recorded before they are made.
    pub cgroup_dirs: Vec<PathBuf>,
    /// The v1 controllers the limits use: each member joins them too.
    pub cgroup_controllers: Vec<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes.
    #[serde(rename = "MemoryLimit")]
    pub memory: i64,
    /// Memory plus swap, bytes; -1 is unlimited.
    #[serde(rename = "MemorySwap")]
    pub memory_swap: i64,
    /// µs; with the quota, `--cpus`.
    #[serde(rename = "CPUPeriod")]
    pub cpu_period: u64,
    #[serde(rename = "CPUQuota")]
    pub cpu_quota: i64,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: u64,
    #[serde(rename = "CPUSetCPUs")]
    pub cpuset_cpus: String,
    #[serde(rename = "PidsLimit")]
    pub pids_limit: i64,
}

impl Limits {
    fn of(c: &Confinement) -> Limits {
        let quota = c.nano_cpus.map(|n| (n as i128 * confine::units::CPU_PERIOD as i128 / 1_000_000_000) as i64);
        Limits {
            memory: c.memory.unwrap_or(0),
            memory_swap: c.memory_swap.unwrap_or(0),
            cpu_period: quota.map_or(0, |_| confine::units::CPU_PERIOD),
            cpu_quota: quota.unwrap_or(0),
            cpu_shares: c.cpu_shares.unwrap_or(0),
            cpuset_cpus: c.cpuset_cpus.clone().unwrap_or_default(),
            pids_limit: c.pids_limit.unwrap_or(0),
        }
    }
}

/// The pod's path below each hierarchy's root.
pub fn rel_path(pod_id: &str) -> PathBuf {
    Path::new("rcon").join(format!("pod-{pod_id}"))
}

/// Check the flags (the same lines as `rcon run`'s) and plan the groups on
/// this host; nothing is made yet.
pub fn plan(pod_id: &str, flags: &Flags) -> Result<(Cgroup, Plan)> {
    let c = confine::parse(flags)?;
    let mut r = serde_json::json!({});
    confine::set_resources(&mut r, &c);
    let r: LinuxResources = serde_json::from_value(r)?;
    let rel = rel_path(pod_id);
    let plan = Plan::probe(&rel, &r).map_err(|e| anyhow!("pod create: {}", e.trim_start_matches("field ")))?;
    let cg = Cgroup {
        cgroup_path: rel,
        cgroup_dirs: plan.dirs(),
        cgroup_controllers: plan.controllers(),
        limits: Limits::of(&c),
    };
    Ok((cg, plan))
}

/// Make the groups; a limit the kernel refuses is named as pod create's.
pub fn make(plan: &Plan) -> Result<()> {
    plan.make()
        .map_err(|e| anyhow!("{}", format!("{e:#}").replace("config.json: field linux.resources.", "pod create: ")))
}

/// Members find their pod's group through the pod annotation.
struct Members;

impl ParentHook for Members {
    fn parent(&self, ctx: &Context, annotations: &HashMap<String, String>) -> Result<Option<Parent>> {
        let Some(key) = annotations.get(super::POD) else { return Ok(None) };
        // An annotation naming no pod is only a label, as before pods had groups.
        let Ok(pod) = super::get(ctx, key) else { return Ok(None) };
        // Never make a pod's dir from a member: a pod on its way out has none.
        Ok(pod
            .cgroup
            .filter(|c| c.cgroup_dirs.first().is_some_and(|d| d.exists()))
            .map(|c| Parent { rel: c.cgroup_path, controllers: c.cgroup_controllers }))
    }
}

/// Give the runtime the pods' groups: the binary calls this first thing.
pub fn install_pod_hook() {
    sandbox::install(Box::new(Members));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_podman_terms() {
        let c = Confinement {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(20),
            ..Default::default()
        };
        let v = serde_json::to_value(Limits::of(&c)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"MemoryLimit": 64 << 20, "MemorySwap": 128 << 20, "CPUPeriod": 100000,
                "CPUQuota": 50000, "CPUShares": 0, "CPUSetCPUs": "", "PidsLimit": 20})
        );
        assert_eq!(Limits::of(&Confinement::default()).cpu_period, 0);
        assert_eq!(rel_path("ab12"), Path::new("rcon/pod-ab12"));
    }
}
