//! `linux.resources` (all but devices, see devices.rs) → the file writes
//! that apply it, per controller, for the layout each controller has on the
//! host. Pure: the host is a function from controller name to version, so
//! each field's writes are unit-tested for v1 and for v2.
//!
//! A field with no home here (its controller is missing, or the layout has
//! no such knob) is an error naming the field and why: never silence.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use super::convert;

/// Which hierarchy a controller is in on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One write: into the container's group of `controller` (for v2, the one
/// cgroup2 dir, with `controller` enabled above it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub version: Version,
    pub controller: String,
    pub file: String,
    pub value: String,
    /// The config field it comes from, for errors.
    pub field: String,
}

/// The writes for `r` on a host where `host(controller)` says which
/// hierarchy has it; Err is "field linux.resources.X: why".
pub fn plan(r: &LinuxResources, host: &dyn Fn(&str) -> Option<Version>) -> Result<Vec<Write>, String> {
    let mut p = Plan { host, out: Vec::new() };
    if let Some(m) = r.memory() {
        p.memory(m)?;
    }
    if let Some(c) = r.cpu() {
        p.cpu(c)?;
    }
    if let Some(pids) = r.pids() {
        let v = p.need("pids", "pids", "pids.limit")?;
        // The spec's 0 or less is "no limit".
        let limit = if pids.limit() > 0 { pids.limit().to_string() } else { "max".into() };
        p.push(v, "pids", "pids.max", limit, "pids.limit");
    }
    if let Some(b) = r.block_io() {
        p.block_io(b)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        let field = "hugepageLimits";
        let size = convert::page_size(h.page_size()).map_err(|e| format!("field linux.resources.{field}: {e}"))?;
        let v = p.need("hugetlb", "hugetlb", field)?;
        let (file, value) = match v {
            Version::V1 => (format!("hugetlb.{size}.limit_in_bytes"), h.limit().to_string()),
            Version::V2 => (format!("hugetlb.{size}.max"), convert::v2_limit(h.limit())),
        };
        p.push_in(v, "hugetlb", file, value, field);
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            p.v1_only("net_cls", "network.classID")?;
            p.push(Version::V1, "net_cls", "net_cls.classid", id.to_string(), "network.classID");
        }
        for prio in n.priorities().iter().flatten() {
            p.v1_only("net_prio", "network.priorities")?;
            let line = format!("{} {}", prio.name(), prio.priority());
            p.push(Version::V1, "net_prio", "net_prio.ifpriomap", line, "network.priorities");
        }
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        let v = p.need("rdma", "rdma", "rdma")?;
        let mut line = dev.clone();
        if let Some(h) = limit.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limit.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        p.push(v, "rdma", "rdma.max", line, "rdma");
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (key, value) in unified {
        p.unified(key, value)?;
    }
    Ok(p.out)
}

struct Plan<'a> {
    host: &'a dyn Fn(&str) -> Option<Version>,
    out: Vec<Write>,
}

fn set<T: PartialEq + Default>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}

impl Plan<'_> {
    /// The version of the controller that `field` needs (`v1`/`v2` names differ: blkio/io).
    fn need(&self, v1: &str, v2: &str, field: &str) -> Result<Version, String> {
        match ((self.host)(v1), (self.host)(v2)) {
            (Some(Version::V1), _) => Ok(Version::V1),
            (_, Some(Version::V2)) => Ok(Version::V2),
            _ => Err(format!(
                "field linux.resources.{field}: needs the {v1} controller, which this host has neither as a cgroup v1 \
                 hierarchy nor offered by cgroup2's root (its cgroup.controllers)"
            )),
        }
    }

    fn v1_only(&self, controller: &str, field: &str) -> Result<(), String> {
        match (self.host)(controller) {
            Some(Version::V1) => Ok(()),
            _ => Err(format!(
                "field linux.resources.{field}: needs the cgroup v1 {controller} controller, which this host lacks \
                 (cgroup v2 has no {controller})"
            )),
        }
    }

    fn push(&mut self, version: Version, controller: &str, file: &str, value: String, field: &str) {
        self.push_in(version, controller, file.into(), value, field);
    }

    fn push_in(&mut self, version: Version, controller: &str, file: String, value: String, field: &str) {
        let controller = controller.into();
        self.out.push(Write { version, controller, file, value, field: field.into() });
    }

    fn no_v2(field: &str, why: &str) -> String {
        format!("field linux.resources.{field}: cgroup v2 has no {why}")
    }

    fn memory(&mut self, m: &LinuxMemory) -> Result<(), String> {
        if set(m.kernel()).is_some() {
            return Err(
                "field linux.resources.memory.kernel: kernel memory limits are no longer enforced by Linux (5.16 and later)"
                    .into(),
            );
        }
        let any = [m.limit(), m.reservation(), m.swap(), m.kernel_tcp()].iter().any(|v| set(*v).is_some())
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true);
        if !any {
            return Ok(());
        }
        let field = "memory";
        match self.need("memory", "memory", field)? {
            Version::V1 => {
                if let Some(l) = set(m.limit()) {
                    self.push(Version::V1, "memory", "memory.limit_in_bytes", l.to_string(), "memory.limit");
                }
                if let Some(r) = set(m.reservation()) {
                    self.push(Version::V1, "memory", "memory.soft_limit_in_bytes", r.to_string(), "memory.reservation");
                }
                if let Some(s) = set(m.swap()) {
                    self.push(Version::V1, "memory", "memory.memsw.limit_in_bytes", s.to_string(), "memory.swap");
                }
                if let Some(s) = m.swappiness() {
                    if s > 100 {
                        return Err(format!("field linux.resources.memory.swappiness: {s} is above the limit, 100"));
                    }
                    self.push(Version::V1, "memory", "memory.swappiness", s.to_string(), "memory.swappiness");
                }
                if m.disable_oom_killer() == Some(true) {
                    self.push(Version::V1, "memory", "memory.oom_control", "1".into(), "memory.disableOOMKiller");
                }
                // Unlike the kmem limit, v1 still enforces the TCP buffer limit.
                if let Some(t) = set(m.kernel_tcp()) {
                    let file = "memory.kmem.tcp.limit_in_bytes";
                    self.push(Version::V1, "memory", file, t.to_string(), "memory.kernelTCP");
                }
            }
            Version::V2 => {
                if m.swappiness().is_some() {
                    return Err(Self::no_v2("memory.swappiness", "per-group swappiness"));
                }
                if m.disable_oom_killer() == Some(true) {
                    return Err(Self::no_v2("memory.disableOOMKiller", "switch to disable the OOM killer"));
                }
                if set(m.kernel_tcp()).is_some() {
                    return Err(Self::no_v2("memory.kernelTCP", "TCP buffer limit (TCP memory counts in memory.max)"));
                }
                if let Some(l) = set(m.limit()) {
                    self.push(Version::V2, "memory", "memory.max", convert::v2_limit(l), "memory.limit");
                }
                if let Some(r) = set(m.reservation()) {
                    self.push(Version::V2, "memory", "memory.low", convert::v2_limit(r), "memory.reservation");
                }
                let swap = convert::swap_to_v2(m.swap().unwrap_or(0), m.limit())
                    .map_err(|e| format!("field linux.resources.memory.swap: {e}"))?;
                if let Some(s) = swap {
                    self.push(Version::V2, "memory", "memory.swap.max", s, "memory.swap");
                }
            }
        }
        Ok(())
    }

    fn cpu(&mut self, c: &LinuxCpu) -> Result<(), String> {
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let v = self.need("cpuset", "cpuset", "cpu.cpus")?;
            if let Some(s) = cpus {
                self.push(v, "cpuset", "cpuset.cpus", s.into(), "cpu.cpus");
            }
            if let Some(s) = mems {
                self.push(v, "cpuset", "cpuset.mems", s.into(), "cpu.mems");
            }
        }
        let shares = set(c.shares());
        let quota = set(c.quota());
        let period = set(c.period());
        let rt = set(c.realtime_runtime()).is_some() || set(c.realtime_period()).is_some();
        if shares.is_none() && quota.is_none() && period.is_none() && !rt && c.idle().is_none() && c.burst().is_none() {
            return Ok(());
        }
        match self.need("cpu", "cpu", "cpu")? {
            Version::V1 => {
                if let Some(s) = shares {
                    self.push(Version::V1, "cpu", "cpu.shares", s.to_string(), "cpu.shares");
                }
                // The period first: the kernel checks the quota against it.
                if let Some(p) = period {
                    self.push(Version::V1, "cpu", "cpu.cfs_period_us", p.to_string(), "cpu.period");
                }
                if let Some(q) = quota {
                    self.push(Version::V1, "cpu", "cpu.cfs_quota_us", q.to_string(), "cpu.quota");
                }
                if let Some(b) = c.burst() {
                    self.push(Version::V1, "cpu", "cpu.cfs_burst_us", b.to_string(), "cpu.burst");
                }
                if let Some(p) = set(c.realtime_period()) {
                    self.push(Version::V1, "cpu", "cpu.rt_period_us", p.to_string(), "cpu.realtimePeriod");
                }
                if let Some(r) = set(c.realtime_runtime()) {
                    self.push(Version::V1, "cpu", "cpu.rt_runtime_us", r.to_string(), "cpu.realtimeRuntime");
                }
            }
            Version::V2 => {
                if rt {
                    return Err(Self::no_v2("cpu.realtimeRuntime", "realtime bandwidth per group"));
                }
                if let Some(s) = shares {
                    let w = convert::shares_to_weight(s).to_string();
                    self.push(Version::V2, "cpu", "cpu.weight", w, "cpu.shares");
                }
                if let Some(max) = convert::cpu_max(quota, period) {
                    self.push(Version::V2, "cpu", "cpu.max", max, "cpu.quota");
                }
                if let Some(b) = c.burst() {
                    self.push(Version::V2, "cpu", "cpu.max.burst", b.to_string(), "cpu.burst");
                }
            }
        }
        if let Some(idle) = c.idle() {
            let v = self.need("cpu", "cpu", "cpu.idle")?;
            self.push(v, "cpu", "cpu.idle", idle.to_string(), "cpu.idle");
        }
        Ok(())
    }

    fn block_io(&mut self, b: &LinuxBlockIo) -> Result<(), String> {
        let throttles: [(&[LinuxThrottleDevice], &str, &str, &str); 4] = [
            (
                b.throttle_read_bps_device().as_deref().unwrap_or_default(),
                "read_bps_device",
                "rbps",
                "throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device().as_deref().unwrap_or_default(),
                "write_bps_device",
                "wbps",
                "throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device().as_deref().unwrap_or_default(),
                "read_iops_device",
                "riops",
                "throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device().as_deref().unwrap_or_default(),
                "write_iops_device",
                "wiops",
                "throttleWriteIOPSDevice",
            ),
        ];
        let weights = b.weight_device().as_deref().unwrap_or_default();
        let any = set(b.weight()).is_some()
            || set(b.leaf_weight()).is_some()
            || !weights.is_empty()
            || throttles.iter().any(|t| !t.0.is_empty());
        if !any {
            return Ok(());
        }
        let v = self.need("blkio", "io", "blockIO")?;
        if let Some(w) = set(b.weight()) {
            match v {
                Version::V1 => self.push(v, "blkio", "blkio.weight", w.to_string(), "blockIO.weight"),
                Version::V2 => {
                    let w = convert::blkio_to_io_weight(w.into()).to_string();
                    self.push(v, "io", "io.weight", format!("default {w}"), "blockIO.weight")
                }
            }
        }
        if let Some(w) = set(b.leaf_weight()) {
            if v == Version::V2 {
                return Err(Self::no_v2("blockIO.leafWeight", "leaf weight"));
            }
            self.push(v, "blkio", "blkio.leaf_weight", w.to_string(), "blockIO.leafWeight");
        }
        for d in weights {
            let dev = format!("{}:{}", d.major(), d.minor());
            if let Some(w) = d.weight() {
                match v {
                    Version::V1 => {
                        self.push(v, "blkio", "blkio.weight_device", format!("{dev} {w}"), "blockIO.weightDevice")
                    }
                    Version::V2 => {
                        let w = convert::blkio_to_io_weight(w.into());
                        self.push(v, "io", "io.weight", format!("{dev} {w}"), "blockIO.weightDevice")
                    }
                }
            }
            if let Some(w) = d.leaf_weight() {
                if v == Version::V2 {
                    return Err(Self::no_v2("blockIO.weightDevice.leafWeight", "leaf weight"));
                }
                self.push(v, "blkio", "blkio.leaf_weight_device", format!("{dev} {w}"), "blockIO.weightDevice");
            }
        }
        for (list, v1_file, v2_key, field) in throttles {
            for t in list {
                let dev = format!("{}:{}", t.major(), t.minor());
                let field = format!("blockIO.{field}");
                match v {
                    Version::V1 => {
                        let file = format!("blkio.throttle.{v1_file}");
                        self.push_in(v, "blkio", file, format!("{dev} {}", t.rate()), &field)
                    }
                    Version::V2 => {
                        let rate = if t.rate() == 0 { "max".to_string() } else { t.rate().to_string() };
                        self.push_in(v, "io", "io.max".into(), format!("{dev} {v2_key}={rate}"), &field)
                    }
                }
            }
        }
        Ok(())
    }

    /// Raw cgroup2 keys, written as given: only plain file names, and only
    /// of controllers the v2 hierarchy has (cgroup.* keys need none).
    fn unified(&mut self, key: &str, value: &str) -> Result<(), String> {
        let field = format!("unified.{key}");
        let Some((controller, _)) = key.split_once('.').filter(|_| !key.contains('/') && !key.starts_with('.')) else {
            return Err(format!("field linux.resources.{field}: not a cgroup2 file name (CONTROLLER.KEY)"));
        };
        if controller != "cgroup" && (self.host)(controller) != Some(Version::V2) {
            return Err(format!(
                "field linux.resources.{field}: the {controller} controller is not in this host's cgroup2 hierarchy"
            ));
        }
        self.push_in(Version::V2, controller, key.into(), value.into(), &field);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    fn v1(c: &str) -> Option<Version> {
        ["memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer"]
            .contains(&c)
            .then_some(Version::V1)
    }

    fn v2(c: &str) -> Option<Version> {
        ["memory", "cpu", "cpuset", "pids", "io", "hugetlb", "rdma"].contains(&c).then_some(Version::V2)
    }

    fn files(w: &[Write]) -> Vec<(&str, &str)> {
        w.iter().map(|w| (w.file.as_str(), w.value.as_str())).collect()
    }

    #[test]
    fn memory_on_v1_and_v2() {
        let r = res(
            serde_json::json!({"memory": {"limit": 33554432, "reservation": 16777216, "swap": 67108864, "swappiness": 10}}),
        );
        assert_eq!(
            files(&plan(&r, &v1).unwrap()),
            [
                ("memory.limit_in_bytes", "33554432"),
                ("memory.soft_limit_in_bytes", "16777216"),
                ("memory.memsw.limit_in_bytes", "67108864"),
                ("memory.swappiness", "10")
            ]
        );
        let e = plan(&r, &v2).unwrap_err();
        assert!(e.contains("memory.swappiness: cgroup v2 has no"), "{e}");
        let r = res(serde_json::json!({"memory": {"limit": 33554432, "reservation": 16777216, "swap": 67108864}}));
        let w = plan(&r, &v2).unwrap();
        assert_eq!(
            files(&w),
            [("memory.max", "33554432"), ("memory.low", "16777216"), ("memory.swap.max", "33554432")]
        );
        assert!(w.iter().all(|w| w.version == Version::V2 && w.controller == "memory"));
        let r = res(serde_json::json!({"memory": {"disableOOMKiller": true}}));
        assert_eq!(files(&plan(&r, &v1).unwrap()), [("memory.oom_control", "1")]);
        assert!(plan(&r, &v2).unwrap_err().contains("disableOOMKiller"));
        let r = res(serde_json::json!({"memory": {"kernel": 1048576}}));
        assert!(plan(&r, &v1).unwrap_err().contains("memory.kernel: kernel memory limits"));
        let r = res(serde_json::json!({"memory": {"kernelTCP": 1048576}}));
        assert_eq!(files(&plan(&r, &v1).unwrap()), [("memory.kmem.tcp.limit_in_bytes", "1048576")]);
        assert!(plan(&r, &v2).unwrap_err().contains("memory.kernelTCP: cgroup v2 has no TCP buffer limit"));
        let r = res(serde_json::json!({"memory": {"swappiness": 101}}));
        assert!(plan(&r, &v1).unwrap_err().contains("101 is above the limit, 100"));
    }

    #[test]
    fn cpu_on_v1_and_v2() {
        let r = res(
            serde_json::json!({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}}),
        );
        assert_eq!(
            files(&plan(&r, &v1).unwrap()),
            [
                ("cpuset.cpus", "0"),
                ("cpuset.mems", "0"),
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000")
            ]
        );
        assert_eq!(
            files(&plan(&r, &v2).unwrap()),
            [("cpuset.cpus", "0"), ("cpuset.mems", "0"), ("cpu.weight", "39"), ("cpu.max", "50000 100000")]
        );
        let rt = res(serde_json::json!({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 100000, "idle": 1}}));
        assert_eq!(
            files(&plan(&rt, &v1).unwrap()),
            [("cpu.rt_period_us", "100000"), ("cpu.rt_runtime_us", "1000"), ("cpu.idle", "1")]
        );
        assert!(plan(&rt, &v2).unwrap_err().contains("cpu.realtimeRuntime: cgroup v2 has no realtime"));
    }

    #[test]
    fn pids_block_io_and_missing_controllers() {
        let r = res(serde_json::json!({"pids": {"limit": 0}}));
        assert_eq!(files(&plan(&r, &v1).unwrap()), [("pids.max", "max")]);
        let r = res(serde_json::json!({"blockIO": {
            "weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]}}));
        assert_eq!(
            files(&plan(&r, &v1).unwrap()),
            [
                ("blkio.weight", "500"),
                ("blkio.weight_device", "8:0 100"),
                ("blkio.throttle.read_bps_device", "8:0 1048576"),
                ("blkio.throttle.write_iops_device", "8:0 100")
            ]
        );
        let w = plan(&r, &v2).unwrap();
        assert_eq!(
            files(&w),
            [
                ("io.weight", "default 4950"),
                ("io.weight", "8:0 910"),
                ("io.max", "8:0 rbps=1048576"),
                ("io.max", "8:0 wiops=100")
            ]
        );
        assert!(w.iter().all(|w| w.controller == "io"));
        let h = res(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}));
        assert!(plan(&h, &v1)
            .unwrap_err()
            .starts_with("field linux.resources.hugepageLimits: needs the hugetlb controller"));
        assert_eq!(files(&plan(&h, &v2).unwrap()), [("hugetlb.2MB.max", "4194304")]);
        let n =
            res(serde_json::json!({"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}}));
        assert!(plan(&n, &v1).unwrap_err().contains("network.classID: needs the cgroup v1 net_cls controller"));
        let with_net = |c: &str| if c == "net_cls" || c == "net_prio" { Some(Version::V1) } else { v1(c) };
        assert_eq!(
            files(&plan(&n, &with_net).unwrap()),
            [("net_cls.classid", "1048577"), ("net_prio.ifpriomap", "eth0 5")]
        );
    }

    #[test]
    fn rdma_and_unified() {
        let r = res(serde_json::json!({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}}));
        assert_eq!(files(&plan(&r, &v2).unwrap()), [("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000")]);
        assert!(plan(&r, &v1).unwrap_err().contains("field linux.resources.rdma: needs the rdma controller"));
        let u = res(serde_json::json!({"unified": {"memory.high": "1G", "cgroup.max.depth": "2"}}));
        assert_eq!(files(&plan(&u, &v2).unwrap()), [("cgroup.max.depth", "2"), ("memory.high", "1G")]);
        // On this host's hybrid layout cgroup2 has no memory controller.
        assert!(plan(&u, &v1).unwrap_err().contains("unified.memory.high: the memory controller is not in"));
        let bad = res(serde_json::json!({"unified": {"../x": "1"}}));
        assert!(plan(&bad, &v2).unwrap_err().contains("not a cgroup2 file name"));
    }

    #[test]
    fn defaults_written_out_write_nothing() {
        let r = res(serde_json::json!({"memory": {"disableOOMKiller": false}, "blockIO": {}, "cpu": {"cpus": ""}}));
        assert!(plan(&r, &v1).unwrap().is_empty());
    }
}
