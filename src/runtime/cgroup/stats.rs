//! A container's usage, read from its groups, in the JSON of runc's
//! `events --stats` (types/events.go), which containerd's shim reads for its
//! metrics. Each counter comes from the v1 group of its controller when the
//! container has one, else from its cgroup2 dir (which always has cpu.stat).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The dirs to read: the cgroup2 one and the v1 groups.
pub struct Dirs<'a> {
    pub v2: Option<&'a Path>,
    pub v1: &'a [PathBuf],
}

impl Dirs<'_> {
    /// The first group that has `file`: v1 first, then cgroup2.
    fn with(&self, file: &str) -> Option<PathBuf> {
        self.v1.iter().map(PathBuf::as_path).chain(self.v2).find(|d| d.join(file).exists()).map(Path::to_path_buf)
    }

    fn read(&self, file: &str) -> Option<String> {
        fs::read_to_string(self.with(file)?.join(file)).ok()
    }

    /// The keyed file of the first group whose copy has `key` (v1's
    /// cpu.stat has throttling but no usage; cgroup2's has usage always).
    fn keyed_with(&self, file: &str, key: &str) -> BTreeMap<String, u64> {
        self.v1
            .iter()
            .map(PathBuf::as_path)
            .chain(self.v2)
            .filter_map(|d| fs::read_to_string(d.join(file)).ok())
            .map(|t| keyed(&t))
            .find(|k| k.contains_key(key))
            .unwrap_or_default()
    }

    fn num(&self, file: &str) -> Option<u64> {
        self.read(file).and_then(|s| number(&s))
    }
}

/// A counter or limit: "max" (and v1's huge "unlimited") as u64::MAX.
fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// `key value` lines (cpu.stat, memory.stat, memory.events, oom_control).
pub fn keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// How many of the container's processes the kernel OOM-killed.
pub fn oom_kills(d: &Dirs) -> u64 {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|f| d.read(f))
        .and_then(|t| keyed(&t).get("oom_kill").copied())
        .unwrap_or(0)
}

/// The `data` of a stats event.
pub fn stats(d: &Dirs) -> Value {
    json!({
        "cpu": cpu(d),
        "memory": memory(d),
        "pids": pids(d),
        "blkio": blkio(d),
    })
}

fn cpu(d: &Dirs) -> Value {
    let stat = d.keyed_with("cpu.stat", "usage_usec");
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let throttle = d.keyed_with("cpu.stat", "nr_periods");
    let th = |k: &str| throttle.get(k).copied().unwrap_or(0);
    let usage = match d.num("cpuacct.usage") {
        Some(total) => {
            let percpu: Vec<u64> = d
                .read("cpuacct.usage_percpu")
                .map(|s| s.split_whitespace().filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_default();
            let ticks = d.read("cpuacct.stat").map(|t| keyed(&t)).unwrap_or_default();
            // cpuacct.stat counts USER_HZ (100/s) ticks.
            let ns = |k: &str| ticks.get(k).copied().unwrap_or(0) * 10_000_000;
            json!({"total": total, "percpu": percpu, "kernel": ns("system"), "user": ns("user")})
        }
        None => json!({
            "total": get("usage_usec") * 1000,
            "kernel": get("system_usec") * 1000,
            "user": get("user_usec") * 1000,
        }),
    };
    // v1 counts throttled time in ns, v2 in µs.
    let throttled = throttle.get("throttled_time").copied().unwrap_or(th("throttled_usec") * 1000);
    json!({
        "usage": usage,
        "throttling": {"periods": th("nr_periods"), "throttledPeriods": th("nr_throttled"), "throttledTime": throttled},
    })
}

fn memory(d: &Dirs) -> Value {
    if d.with("memory.usage_in_bytes").is_some() {
        let entry = |p: &str| {
            json!({
                "limit": d.num(&format!("{p}.limit_in_bytes")).unwrap_or(0),
                "usage": d.num(&format!("{p}.usage_in_bytes")).unwrap_or(0),
                "max": d.num(&format!("{p}.max_usage_in_bytes")).unwrap_or(0),
                "failcnt": d.num(&format!("{p}.failcnt")).unwrap_or(0),
            })
        };
        let raw = d.read("memory.stat").map(|t| keyed(&t)).unwrap_or_default();
        return json!({
            "cache": raw.get("cache").copied().unwrap_or(0),
            "usage": entry("memory"),
            "swap": entry("memory.memsw"),
            "raw": raw,
        });
    }
    if d.with("memory.current").is_some() {
        let raw = d.read("memory.stat").map(|t| keyed(&t)).unwrap_or_default();
        let events = d.read("memory.events").map(|t| keyed(&t)).unwrap_or_default();
        return json!({
            "cache": raw.get("file").copied().unwrap_or(0),
            "usage": {
                "limit": d.num("memory.max").unwrap_or(u64::MAX),
                "usage": d.num("memory.current").unwrap_or(0),
                "max": d.num("memory.peak").unwrap_or(0),
                "failcnt": events.get("max").copied().unwrap_or(0),
            },
            "swap": {"limit": d.num("memory.swap.max").unwrap_or(0), "usage": d.num("memory.swap.current").unwrap_or(0), "failcnt": 0},
            "raw": raw,
        });
    }
    json!({})
}

fn pids(d: &Dirs) -> Value {
    // Without a pids group, the processes in the cgroup2 dir.
    let current = d.num("pids.current").unwrap_or_else(|| {
        d.v2.and_then(|p| fs::read_to_string(p.join("cgroup.threads")).ok()).map_or(0, |t| t.lines().count() as u64)
    });
    let limit = d.num("pids.max").filter(|l| *l != u64::MAX).unwrap_or(0);
    json!({"current": current, "limit": limit})
}

fn blkio(d: &Dirs) -> Value {
    if let Some(t) = d.read("blkio.throttle.io_service_bytes_recursive") {
        let ops = d.read("blkio.throttle.io_serviced_recursive").unwrap_or_default();
        return json!({"ioServiceBytesRecursive": blkio_v1(&t), "ioServicedRecursive": blkio_v1(&ops)});
    }
    match d.read("io.stat") {
        Some(t) => {
            let (bytes, ios) = io_stat(&t);
            json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios})
        }
        None => json!({}),
    }
}

/// v1's `MAJ:MIN Op N` lines (the `Total` summary line is skipped).
fn blkio_v1(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?.parse::<u64>().ok()?);
            let (major, minor) = dev.split_once(':')?;
            Some(json!({"major": major.parse::<u64>().ok()?, "minor": minor.parse::<u64>().ok()?, "op": op, "value": value}))
        })
        .collect()
}

/// v2's io.stat (`MAJ:MIN rbytes=N wbytes=N rios=N wios=N …`) as v1's entries.
fn io_stat(text: &str) -> (Vec<Value>, Vec<Value>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else { continue };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(value) = v.parse::<u64>() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(json!({"major": major, "minor": minor, "op": op, "value": value}));
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_and_numbers() {
        let k = keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        assert_eq!(k["oom_kill"], 2);
        assert_eq!(number("max\n"), Some(u64::MAX));
        assert_eq!(number("4096\n"), Some(4096));
    }

    #[test]
    fn block_io_both_ways() {
        let v1 = blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(
            v1,
            [
                json!({"major": 8, "minor": 0, "op": "Read", "value": 4096}),
                json!({"major": 8, "minor": 0, "op": "Write", "value": 0})
            ]
        );
        let (bytes, ios) = io_stat("8:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(bytes[1], json!({"major": 8, "minor": 0, "op": "Write", "value": 1024}));
        assert_eq!(ios[0], json!({"major": 8, "minor": 0, "op": "Read", "value": 1}));
    }

    #[test]
    fn counters_come_from_the_group_that_has_them() {
        let base = std::env::temp_dir().join(format!("rcon-cg-stats-{}", std::process::id()));
        let (v2, mem) = (base.join("v2"), base.join("memory"));
        fs::create_dir_all(&v2).unwrap();
        fs::create_dir_all(&mem).unwrap();
        fs::write(v2.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n").unwrap();
        fs::write(v2.join("cgroup.threads"), "10\n11\n").unwrap();
        fs::write(mem.join("memory.usage_in_bytes"), "8192\n").unwrap();
        fs::write(mem.join("memory.limit_in_bytes"), "33554432\n").unwrap();
        fs::write(mem.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n").unwrap();
        let v1 = [mem.clone()];
        let d = Dirs { v2: Some(&v2), v1: &v1 };
        let s = stats(&d);
        assert_eq!(s["cpu"]["usage"]["total"], 1_500_000);
        assert_eq!(s["memory"]["usage"]["limit"], 33_554_432);
        assert_eq!(s["memory"]["usage"]["usage"], 8192);
        assert_eq!(s["pids"]["current"], 2);
        assert_eq!(oom_kills(&d), 1);
        fs::remove_dir_all(&base).unwrap();
    }
}
