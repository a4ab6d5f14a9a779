//! What rcon cannot apply, it refuses at `create`, naming the field: a
//! config.json setting that rcon would silently drop (a memory limit, an
//! AppArmor profile, an SELinux label) gives a container less confinement
//! than its author asked for, and silence is the one wrong answer.
//!
//! The check walks the config as JSON (the typed spec serialised back, so
//! every field oci-spec knows is seen) and compares each set leaf with the
//! list of fields rcon applies. A leaf is set unless it is null, false, an
//! empty string, or an empty object or array: those mean "the default",
//! which is what rcon does anyway.

use std::path::Path;

use anyhow::{bail, Result};
use oci_spec::runtime::Spec;
use serde_json::Value;

/// Every field rcon applies, as a dotted path where `*` is any array index.
/// A path covers everything below it (`hooks` covers each hook's fields).
const APPLIED: &[&str] = &[
    "ociVersion",
    "root.path",
    "root.readonly",
    "mounts.*.destination",
    "mounts.*.type",
    "mounts.*.source",
    "mounts.*.options",
    "process.terminal",
    "process.consoleSize",
    "process.user.uid",
    "process.user.gid",
    "process.user.umask",
    "process.user.additionalGids",
    "process.args",
    "process.env",
    "process.cwd",
    "process.capabilities",
    "process.rlimits",
    "process.noNewPrivileges",
    "process.oomScoreAdj",
    "hostname",
    "domainname",
    "hooks",
    "annotations",
    "linux.uidMappings",
    "linux.gidMappings",
    "linux.sysctl",
    "linux.cgroupsPath",
    "linux.namespaces",
    "linux.devices",
    "linux.rootfsPropagation",
    "linux.maskedPaths",
    "linux.readonlyPaths",
    // seccomp.rs refuses what of it rcon cannot do (a notify listener).
    "linux.seccomp",
    // cgroup/resources.rs refuses what this host cannot apply.
    "linux.resources.memory",
    "linux.resources.cpu",
    "linux.resources.pids",
    "linux.resources.blockIO",
    "linux.resources.hugepageLimits",
    "linux.resources.network",
    "linux.resources.rdma",
    "linux.resources.unified",
];

/// What the host offers that some fields need.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// A cgroup v1 devices controller, for `linux.resources.devices`.
    pub devices_controller: bool,
    /// cgroup2, where a BPF device program can do the same (device_prog.rs).
    pub cgroup2: bool,
    /// AppArmor is enabled in the kernel.
    pub apparmor: bool,
}

impl Host {
    pub fn probe() -> Host {
        Host {
            devices_controller: super::cgroup_v1::controller("devices").is_some(),
            cgroup2: super::cgroup::host_mount().is_some(),
            apparmor: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y"),
        }
    }
}

/// Refuse the first set field that rcon would not apply, on this host.
pub fn refuse(spec: &Spec) -> Result<()> {
    // The probe reads mountinfo: only for a config that asks for what it checks.
    let linux = spec.linux().as_ref();
    let needs_probe = linux.and_then(|l| l.resources().as_ref()).is_some()
        || spec.process().as_ref().and_then(|p| p.apparmor_profile().as_ref()).is_some();
    let host =
        if needs_probe { Host::probe() } else { Host { devices_controller: false, cgroup2: false, apparmor: false } };
    refuse_on(spec, host)?;
    if let Some(r) = super::cgroup::resources_of(spec) {
        super::cgroup::plan(r, &super::cgroup::Host::probe())?;
    }
    Ok(())
}

pub fn refuse_on(spec: &Spec, host: Host) -> Result<()> {
    let v = serde_json::to_value(spec)?;
    let mut set = Vec::new();
    leaves(&v, &mut String::new(), &mut set);
    for path in set {
        if let Some(why) = why_not(&path, host) {
            bail!("config.json: field {path}: {why}; rcon refuses what it cannot apply");
        }
    }
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.cgroups_path().as_deref()).and_then(Path::to_str) {
        if p.contains(':') {
            let why = if Path::new("/run/systemd/system").exists() {
                "rcon does not ask systemd for cgroups yet"
            } else {
                "that needs systemd, which does not run on this host"
            };
            bail!("config.json: field linux.cgroupsPath: {p:?} is systemd's slice:prefix:name form: {why}; give a plain path");
        }
    }
    Ok(())
}

/// Why `path` (a set leaf) cannot be applied here, or None when it can.
fn why_not(path: &str, host: Host) -> Option<String> {
    if APPLIED.iter().any(|a| covers(a, path)) {
        return None;
    }
    if covers("linux.resources.devices", path) {
        return (!host.devices_controller && !host.cgroup2).then(|| {
            "device rules need the cgroup v1 devices controller or cgroup2 (for a BPF program), which this host lacks"
                .into()
        });
    }
    let what = if covers("process.apparmorProfile", path) {
        if host.apparmor {
            "rcon does not load AppArmor profiles yet"
        } else {
            "this host has no AppArmor"
        }
    } else {
        "rcon does not apply this setting"
    };
    Some(what.into())
}

/// Whether field `a` is `path` or one of its parents.
fn covers(a: &str, path: &str) -> bool {
    path == a || path.strip_prefix(a).is_some_and(|rest| rest.starts_with('.'))
}

/// The dotted paths of every set leaf of `v` (array indices as `*`).
fn leaves(v: &Value, path: &mut String, out: &mut Vec<String>) {
    let mut descend = |key: &str, child: &Value, path: &mut String| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        leaves(child, path, out);
        path.truncate(len);
    };
    match v {
        Value::Null | Value::Bool(false) => {}
        Value::String(s) if s.is_empty() => {}
        Value::Object(m) => m.iter().for_each(|(k, c)| descend(k, c, path)),
        Value::Array(a) => a.iter().for_each(|c| descend("*", c, path)),
        _ => out.push(path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host { devices_controller: true, cgroup2: true, apparmor: false };

    fn spec_with(patch: impl FnOnce(&mut Value)) -> Spec {
        let mut v = serde_json::to_value(super::super::spec::default_spec()).unwrap();
        patch(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn refusal(spec: &Spec, host: Host) -> String {
        format!("{:#}", refuse_on(spec, host).unwrap_err())
    }

    #[test]
    fn default_spec_is_applied_whole() {
        refuse_on(&spec_with(|_| {}), HOST).unwrap();
        let bare = Host { devices_controller: false, cgroup2: false, apparmor: false };
        refuse_on(&spec_with(|_| {}), bare).unwrap();
    }

    #[test]
    fn seccomp_is_applied() {
        let s = spec_with(|v| v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"}));
        refuse_on(&s, HOST).unwrap();
    }

    #[test]
    fn apparmor_names_the_host() {
        let s = spec_with(|v| v["process"]["apparmorProfile"] = "docker-default".into());
        assert!(refusal(&s, HOST).contains("process.apparmorProfile: this host has no AppArmor"));
        let with = Host { apparmor: true, ..HOST };
        assert!(refusal(&s, with).contains("does not load AppArmor profiles"));
        let empty = spec_with(|v| v["process"]["apparmorProfile"] = "".into());
        refuse_on(&empty, HOST).unwrap();
    }

    #[test]
    fn limits_pass_here_and_device_rules_need_the_controller() {
        // resources.rs checks limits against the host; here they are known fields.
        let mem = spec_with(|v| v["linux"]["resources"] = serde_json::json!({"memory": {"limit": 1 << 20}}));
        refuse_on(&mem, HOST).unwrap();
        let dev = spec_with(|v| {
            v["linux"]["resources"] = serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]})
        });
        refuse_on(&dev, HOST).unwrap();
        let v2 = Host { devices_controller: false, ..HOST };
        refuse_on(&dev, v2).unwrap();
        let neither = Host { cgroup2: false, ..v2 };
        assert!(refusal(&dev, neither).contains("linux.resources.devices.*.access: device rules need"));
    }

    #[test]
    fn defaults_written_out_are_not_refused() {
        let s = spec_with(|v| {
            v["linux"]["resources"] = serde_json::json!({"memory": {"disableOOMKiller": false}, "blockIO": {}});
            v["linux"]["mountLabel"] = "".into();
        });
        refuse_on(&s, HOST).unwrap();
    }

    #[test]
    fn other_ignored_fields_and_systemd_paths_are_refused() {
        let s = spec_with(|v| v["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"}));
        assert!(refusal(&s, HOST).contains("linux.personality.domain: rcon does not apply this setting"));
        let s = spec_with(|v| v["linux"]["cgroupsPath"] = "system.slice:rcon:c1".into());
        assert!(refusal(&s, HOST).contains("systemd's slice:prefix:name"));
        let s = spec_with(|v| {
            v["mounts"][0]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}])
        });
        assert!(refusal(&s, HOST).contains("mounts.*.uidMappings"));
    }
}
