//! `linux.resources.devices` through the cgroup v1 devices controller, as
//! runc applies them on v1 and hybrid hosts: the config's rules in order,
//! then the devices rcon itself puts in /dev (so a "deny all" rule, which
//! `runc spec` and containerd write, still leaves a working /dev). A host
//! without the v1 devices controller (pure v2) gets the same list as a BPF
//! device program on the container's v2 cgroup (device_prog.rs), which also
//! checks the list for both paths before anything is made.
//!
//! cgroup_v1.rs makes the group and puts the container in it.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

/// The devices every container gets in /dev (rootfs.rs makes them), allowed
/// after the config's rules, plus mknod of any node (access is what counts).
const ALWAYS: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// The config's device rules, or None when it has none.
pub fn rules(spec: &Spec) -> Option<&[LinuxDeviceCgroup]> {
    let list = spec.linux().as_ref()?.resources().as_ref()?.devices().as_deref()?;
    (!list.is_empty()).then_some(list)
}

/// The writes that set a group's list: (file, rule), in order.
pub fn writes(spec: &Spec) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = rules(spec)
        .unwrap_or_default()
        .iter()
        .map(|r| (if r.allow() { "devices.allow" } else { "devices.deny" }, rule_line(r)))
        .collect();
    out.extend(ALWAYS.iter().map(|r| ("devices.allow", r.to_string())));
    let listed = spec.linux().as_ref().and_then(|l| l.devices().as_deref()).unwrap_or_default();
    for d in listed {
        let kind = if d.typ() == LinuxDeviceType::B { 'b' } else { 'c' };
        out.push(("devices.allow", format!("{kind} {}:{} rwm", d.major(), d.minor())));
    }
    out
}

/// One rule as the kernel reads it: `TYPE MAJOR:MINOR ACCESS`, `*` for any.
fn rule_line(r: &LinuxDeviceCgroup) -> String {
    let kind = match r.typ() {
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        // No cgroup rule: device_prog::rules refuses it before any write.
        Some(LinuxDeviceType::P) => "p",
        _ => "a",
    };
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_string(), |n| n.to_string());
    let access = r.access().as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm");
    format!("{kind} {}:{} {access}", num(r.major()), num(r.minor()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: serde_json::Value, devices: serde_json::Value) -> Spec {
        let mut v = serde_json::to_value(super::super::spec::default_spec()).unwrap();
        v["linux"]["resources"] = resources;
        v["linux"]["devices"] = devices;
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deny_all_then_the_defaults_and_listed_devices() {
        let s = spec(
            serde_json::json!({"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "b", "major": 8, "access": "r"}]}),
            serde_json::json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]),
        );
        let w = writes(&s);
        assert_eq!(w[0], ("devices.deny", "a *:* rwm".into()));
        assert_eq!(w[1], ("devices.allow", "b 8:* r".into()));
        assert!(w.contains(&("devices.allow", "c 1:3 rwm".into())));
        assert_eq!(w.last().unwrap(), &("devices.allow", "c 10:229 rwm".into()));
    }

    #[test]
    fn no_rules_means_no_group() {
        assert!(rules(&spec(serde_json::json!({}), serde_json::json!([]))).is_none());
    }
}
