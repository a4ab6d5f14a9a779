//! Docker's confinement flags for `rcon run` (resources, ulimits, devices,
//! capabilities, --privileged, --read-only, tmpfs and bind mounts) and the
//! default masks, turned into the OCI config as docker and runc map them.
//!
//! `parse` checks every flag (statting devices and host paths) before the
//! engine makes anything; `apply` edits the config; `host_config` is what
//! `inspect` shows, in docker's HostConfig shape.

pub mod devices;
pub mod mounts;
pub mod units;

use std::str::FromStr;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use devices::Device;
use mounts::{Flag, UserMount};
use units::Ulimit;

/// The annotation that keeps the flags for `inspect`.
pub const HOST_CONFIG: &str = "rcon.host-config";

/// The flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<String>,
    pub devices: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// All capabilities and host devices, no masks, no seccomp profile,
    /// /proc/sys and /sys writable.
    pub privileged: bool,
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
}

/// The flags, checked and in their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Confinement {
    /// Bytes; swap is memory+swap as docker means it, -1 for unlimited.
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub devices: Vec<Device>,
    /// Normalised names (CAP_X, or ALL).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub mounts: Vec<UserMount>,
}

/// Docker's maskedPaths: kernel state a container must not read.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's readonlyPaths: kernel knobs a container must not turn.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// What parsing needs from the host (a seam for unit tests).
pub struct Host {
    pub cpus: usize,
    pub online: Vec<u32>,
    /// The memory controller can limit swap (docker's SwapLimit).
    pub swap_limit: bool,
}

impl Host {
    pub fn probe() -> Host {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| units::cpu_list(&s))
            .unwrap_or_else(|| (0..cpus as u32).collect());
        // v1: the memsw files exist only with swap accounting; v2 has it with memory.
        let swap_limit = std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
            || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|s| s.contains("memory"));
        Host { cpus, online, swap_limit }
    }
}

pub fn parse(f: &Flags) -> Result<Confinement> {
    // Only --memory, --cpus and --cpuset-cpus read the host: a run or pod create without them
    // skips the probe (a dozen system calls, available_parallelism's cgroup walk among them).
    let host = if f.memory.is_some() || f.cpus.is_some() || f.cpuset_cpus.is_some() {
        Host::probe()
    } else {
        Host { cpus: 1, online: Vec::new(), swap_limit: false }
    };
    parse_on(f, &host)
}

pub fn parse_on(f: &Flags, host: &Host) -> Result<Confinement> {
    let memory = f.memory.as_deref().map(|m| units::bytes("--memory", m)).transpose()?;
    if let Some(m) = memory.filter(|m| *m < units::MIN_MEMORY) {
        bail!("--memory {m}: the minimum memory limit is 6MB (docker's)");
    }
    let memory_swap = match (f.memory_swap.as_deref(), memory) {
        // Docker's default: as much swap as memory, where swap can be limited.
        (None, m) => m.filter(|_| host.swap_limit).map(|m| m * 2),
        (Some(_), None) => bail!("--memory-swap needs --memory (it is memory plus swap)"),
        (Some("-1"), Some(_)) => Some(-1),
        (Some(s), Some(m)) => {
            let swap = units::bytes("--memory-swap", s)?;
            if swap < m {
                bail!("--memory-swap {s}: must be at least --memory (it is memory plus swap), or -1 for unlimited");
            }
            Some(swap)
        }
    };
    if let Some(s) = f.cpu_shares.filter(|s| !(units::MIN_SHARES..=units::MAX_SHARES).contains(s)) {
        bail!("--cpu-shares {s}: must be from {} to {}", units::MIN_SHARES, units::MAX_SHARES);
    }
    let mut mounts = Vec::new();
    for v in &f.volumes {
        mounts.push(mounts::volume(v)?);
    }
    for t in &f.tmpfs {
        mounts.push(mounts::tmpfs(t)?);
    }
    for m in &f.mounts {
        mounts.push(mounts::mount(m)?);
    }
    if let Some(dup) = mounts.iter().enumerate().find(|(i, m)| mounts[..*i].iter().any(|o| o.target == m.target)) {
        bail!("{} is mounted twice", dup.1.target);
    }
    Ok(Confinement {
        memory,
        memory_swap,
        nano_cpus: f.cpus.as_deref().map(|c| units::nano_cpus(c, host.cpus)).transpose()?,
        cpu_shares: f.cpu_shares,
        cpuset_cpus: f.cpuset_cpus.as_deref().map(|c| units::cpuset(c, &host.online)).transpose()?,
        // Docker: 0 or less is no limit.
        pids_limit: f.pids_limit.filter(|p| *p > 0),
        ulimits: f.ulimits.iter().map(|u| units::ulimit(u)).collect::<Result<_>>()?,
        devices: f.devices.iter().map(|d| devices::parse(d)).collect::<Result<_>>()?,
        cap_add: f.cap_add.iter().map(|c| cap_name("--cap-add", c)).collect::<Result<_>>()?,
        cap_drop: f.cap_drop.iter().map(|c| cap_name("--cap-drop", c)).collect::<Result<_>>()?,
        privileged: f.privileged,
        read_only: f.read_only,
        mounts,
    })
}

/// `net_raw`, `NET_RAW` or `CAP_NET_RAW` as `CAP_NET_RAW`; `all` as `ALL`.
fn cap_name(flag: &str, s: &str) -> Result<String> {
    let up = s.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    if caps::Capability::from_str(&name).is_err() {
        bail!("{flag} {s}: unknown capability {name:?}");
    }
    Ok(name)
}

/// Docker's ALL: every capability rcon can give, which is its own bounding
/// set (a machine may withhold some, as module loading on these VMs).
fn all_caps() -> Vec<String> {
    let set = caps::read(None, caps::CapSet::Bounding)
        .or_else(|_| caps::runtime::procfs_all_supported(None))
        .unwrap_or_else(|_| caps::all());
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

/// Docker's rules: ALL in --cap-add starts from every capability, ALL in
/// --cap-drop from none; then the named ones are added and dropped.
pub fn capabilities(c: &Confinement, default: &[&str], all: &[String]) -> Vec<String> {
    let has_all = |l: &[String]| l.iter().any(|x| x == "ALL");
    if c.privileged || has_all(&c.cap_add) {
        return if c.privileged {
            all.to_vec()
        } else {
            all.iter().filter(|x| !c.cap_drop.contains(x)).cloned().collect()
        };
    }
    let mut set: Vec<String> =
        if has_all(&c.cap_drop) { Vec::new() } else { default.iter().map(|s| s.to_string()).collect() };
    set.retain(|x| !c.cap_drop.contains(x));
    for a in &c.cap_add {
        if !set.contains(a) {
            set.push(a.clone());
        }
    }
    set
}

/// Edit the config: `default_caps` is what `rcon run` gives without flags.
pub fn apply(v: &mut Value, c: &Confinement, default_caps: &[&str]) -> Result<()> {
    set_resources(&mut v["linux"]["resources"], c);
    let caps = capabilities(c, default_caps, &all_caps());
    for set in ["bounding", "effective", "permitted"] {
        v["process"]["capabilities"][set] = json!(caps);
    }
    set_rlimits(&mut v["process"], &c.ulimits);
    let mut devs: Vec<Device> = if c.privileged { devices::host_devices() } else { Vec::new() };
    devs.extend(c.devices.iter().cloned());
    let linux = &mut v["linux"];
    linux["devices"] = Value::Array(devs.iter().map(Device::oci).collect());
    // Where the host has no way to apply a device list (neither the v1
    // devices controller nor cgroup2 for a BPF program), none is written,
    // rather than every run refused.
    let device_list = crate::runtime::applies_device_rules();
    if device_list {
        linux["resources"]["devices"] = device_rules(c);
    }
    let (masked, readonly): (&[&str], &[&str]) = if c.privileged { (&[], &[]) } else { (MASKED_PATHS, READONLY_PATHS) };
    linux["maskedPaths"] = json!(masked);
    linux["readonlyPaths"] = json!(readonly);
    if device_list {
        v["annotations"][crate::runtime::DEVICES_PREFER_BPF] = json!("bpf");
    }
    v["root"]["readonly"] = json!(c.read_only);
    let Some(list) = v["mounts"].as_array_mut() else { bail!("the config has no mounts") };
    if c.privileged {
        // Docker's --privileged: /sys (and the cgroup tree) writable.
        for m in list.iter_mut().filter(|m| m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup") {
            if let Some(o) = m["options"].as_array_mut() {
                o.retain(|o| o != "ro");
            }
        }
    }
    // Parents before children, whatever order the flags came in (as docker sorts).
    let mut user: Vec<&UserMount> = c.mounts.iter().collect();
    user.sort_by_key(|m| std::path::Path::new(&m.target).components().count());
    list.retain(|m| !user.iter().any(|u| m["destination"] == u.target.as_str()));
    list.extend(user.iter().map(|m| m.oci()));
    Ok(())
}

/// Docker's list (or allow-all when privileged), then the `--device` nodes.
pub fn device_rules(c: &Confinement) -> Value {
    if c.privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    Value::Array(devices::default_rules().into_iter().chain(c.devices.iter().map(Device::rule)).collect())
}

/// The limits into `r`, an OCI `linux.resources` object (a container's, or
/// the one a pod's cgroup is made from).
pub fn set_resources(r: &mut Value, c: &Confinement) {
    if let Some(m) = c.memory {
        r["memory"]["limit"] = json!(m);
    }
    if let Some(s) = c.memory_swap {
        r["memory"]["swap"] = json!(s);
    }
    if let Some(n) = c.nano_cpus {
        r["cpu"]["period"] = json!(units::CPU_PERIOD);
        r["cpu"]["quota"] = json!(n as i128 * units::CPU_PERIOD as i128 / 1_000_000_000);
    }
    if let Some(s) = c.cpu_shares {
        r["cpu"]["shares"] = json!(s);
    }
    if let Some(s) = &c.cpuset_cpus {
        r["cpu"]["cpus"] = json!(s);
    }
    if let Some(p) = c.pids_limit {
        r["pids"]["limit"] = json!(p);
    }
}

/// Replace the rlimits of the same type, keep the rest (the default nofile).
fn set_rlimits(p: &mut Value, ulimits: &[Ulimit]) {
    let mut list: Vec<Value> = p["rlimits"].as_array().cloned().unwrap_or_default();
    let raw = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    for u in ulimits {
        let t = u.rlimit_type();
        list.retain(|r| r["type"] != t.as_str());
        list.push(json!({"type": t, "soft": raw(u.soft), "hard": raw(u.hard)}));
    }
    p["rlimits"] = Value::Array(list);
}

/// What `inspect` shows, with docker's HostConfig keys.
pub fn host_config(c: &Confinement) -> Value {
    let of = |f: Flag| c.mounts.iter().filter(move |m| m.flag == f);
    let binds: Vec<String> =
        of(Flag::Volume).map(|m| format!("{}:{}{}", m.source, m.target, if m.readonly { ":ro" } else { "" })).collect();
    let tmpfs: serde_json::Map<String, Value> = of(Flag::Tmpfs)
        .map(|m| {
            let mut o = m.tmpfs_opts.clone();
            if m.readonly {
                o.push("ro".into());
            }
            (m.target.clone(), json!(o.join(",")))
        })
        .collect();
    let mounts: Vec<Value> = of(Flag::Mount)
        .map(|m| {
            let kind = if m.kind == mounts::Kind::Bind { "bind" } else { "tmpfs" };
            json!({"Type": kind, "Source": m.source, "Target": m.target, "ReadOnly": m.readonly})
        })
        .collect();
    json!({
        "Memory": c.memory.unwrap_or(0),
        "MemorySwap": c.memory_swap.unwrap_or(0),
        "NanoCpus": c.nano_cpus.unwrap_or(0),
        "CpuShares": c.cpu_shares.unwrap_or(0),
        "CpusetCpus": c.cpuset_cpus.clone().unwrap_or_default(),
        "PidsLimit": c.pids_limit,
        "Ulimits": c.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
        "Devices": c.devices.iter().map(|d| json!({
            "PathOnHost": d.host, "PathInContainer": d.ctr, "CgroupPermissions": d.access,
        })).collect::<Vec<_>>(),
        "CapAdd": c.cap_add,
        "CapDrop": c.cap_drop,
        "Privileged": c.privileged,
        "ReadonlyRootfs": c.read_only,
        "Tmpfs": tmpfs,
        "Binds": binds,
        "Mounts": mounts,
    })
}

/// The HostConfig a container was run with, from its annotations (null
/// for a bundle's container, whose config.json says it all).
pub fn host_config_of(annotations: &std::collections::HashMap<String, String>) -> Value {
    annotations.get(HOST_CONFIG).and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
