//! The value syntaxes of docker's resource flags: byte sizes, CPU counts,
//! cpuset lists and ulimits, parsed as docker (go-units) parses them.

use anyhow::{bail, Context as _, Result};

/// Docker's smallest memory limit (linuxMinMemory): 6 MiB.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The CFS period `--cpus` uses, as docker and runc: 100 ms in µs.
pub const CPU_PERIOD: u64 = 100_000;

/// The kernel's range for cpu.shares (runc's and docker's clamp).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;

/// A size as go-units' RAMInBytes reads it: a number (a fraction allowed)
/// and an optional binary unit b, k, m, g, t or p, any case, optionally
/// followed by `b` or `ib` ("512m", "1.5G", "64kb", "1MiB").
pub fn bytes(flag: &str, s: &str) -> Result<i64> {
    let bad = || format!("{flag} {s:?}: not a size (a number with an optional unit b, k, m, g, t or p)");
    let lower = s.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty())).unwrap_or(unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => bail!(bad()),
    };
    let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite()).with_context(bad)?;
    let v = n * (1u64 << shift) as f64;
    if v >= i64::MAX as f64 {
        bail!("{flag} {s:?}: too large");
    }
    Ok(v as i64)
}

/// `--cpus`: a positive count, at most the CPUs this host has (docker's
/// check), as nano-CPUs.
pub fn nano_cpus(s: &str, host_cpus: usize) -> Result<i64> {
    let n: f64 =
        s.parse().ok().filter(|n: &f64| n.is_finite()).with_context(|| format!("--cpus {s:?}: not a number"))?;
    let nano = (n * 1e9).round() as i64;
    // Docker's range: from 0.01 CPU (a quota of 1 ms per period) to all of them.
    if nano < 10_000_000 || nano > host_cpus as i64 * 1_000_000_000 {
        bail!("--cpus {s}: the range of CPUs is from 0.01 to {host_cpus}.00, as there are only {host_cpus} CPUs available");
    }
    Ok(nano)
}

/// `--cpuset-cpus`: a list of CPU numbers and ranges ("0-3,5"), each of
/// which must be online.
pub fn cpuset(s: &str, online: &[u32]) -> Result<String> {
    let cpus = cpu_list(s).with_context(|| format!("--cpuset-cpus {s:?}: not a list of CPUs like 0-3,5"))?;
    if let Some(c) = cpus.iter().find(|c| !online.contains(c)) {
        bail!("--cpuset-cpus {s}: CPU {c} is not available (online: {})", ranges(online));
    }
    Ok(s.to_string())
}

/// The CPUs of a kernel list ("0-3,5"), or None when it is malformed.
pub fn cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => (part.parse::<u32>().ok()?, part.parse::<u32>().ok()?),
        };
        if lo > hi || hi - lo > 4096 {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// A sorted CPU set shown as a kernel list.
fn ranges(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// One `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name (nofile).
    pub name: String,
    /// -1 is unlimited, as docker writes it.
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// The OCI rlimit type (RLIMIT_NOFILE).
    pub fn rlimit_type(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }
}

/// Docker's ulimit names (go-units' ulimitNameMapping).
pub const ULIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

pub fn ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s.split_once('=').with_context(|| format!("--ulimit {s:?}: use NAME=SOFT[:HARD]"))?;
    if !ULIMIT_NAMES.contains(&name) {
        bail!("--ulimit {s:?}: unknown name {name:?} (one of {})", ULIMIT_NAMES.join(", "));
    }
    let num = |v: &str| -> Result<i64> {
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= -1)
            .with_context(|| format!("--ulimit {s:?}: {v:?} is not a number (-1 is unlimited)"))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    let unlimited = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if unlimited(soft) > unlimited(hard) {
        bail!("--ulimit {s:?}: the soft limit {soft} is above the hard limit {hard}");
    }
    Ok(Ulimit { name: name.to_string(), soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_docker_units() {
        assert_eq!(bytes("-m", "512").unwrap(), 512);
        assert_eq!(bytes("-m", "64k").unwrap(), 64 << 10);
        assert_eq!(bytes("-m", "64KB").unwrap(), 64 << 10);
        assert_eq!(bytes("-m", "100m").unwrap(), 100 << 20);
        assert_eq!(bytes("-m", "1.5g").unwrap(), 3 << 29);
        assert_eq!(bytes("-m", "2GiB").unwrap(), 2 << 30);
        assert_eq!(bytes("-m", "10b").unwrap(), 10);
        for bad in ["", "m", "12x", "1.2.3m", "-5m", "5 mm", "nan"] {
            let e = bytes("-m", bad).unwrap_err().to_string();
            assert!(e.starts_with("-m "), "{bad:?}: {e}");
        }
    }

    #[test]
    fn cpus_are_bounded_by_the_host() {
        assert_eq!(nano_cpus("0.5", 2).unwrap(), 500_000_000);
        assert_eq!(nano_cpus("2", 2).unwrap(), 2_000_000_000);
        assert!(nano_cpus("2.5", 2).unwrap_err().to_string().contains("from 0.01 to 2.00"));
        assert!(nano_cpus("0", 2).is_err());
        assert!(nano_cpus("x", 2).unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn cpusets_are_lists_of_online_cpus() {
        assert_eq!(cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        for bad in ["", "a", "1-", "3-1", "0,,1", "0 1"] {
            assert!(cpu_list(bad).is_none(), "{bad:?}");
        }
        assert_eq!(cpuset("0,1", &[0, 1]).unwrap(), "0,1");
        let e = cpuset("0-3", &[0, 1]).unwrap_err().to_string();
        assert!(e.contains("CPU 2 is not available (online: 0-1)"), "{e}");
        assert!(cpuset("1-0", &[0, 1]).unwrap_err().to_string().contains("not a list"));
    }

    #[test]
    fn ulimits_as_docker() {
        assert_eq!(ulimit("nofile=100:200").unwrap(), Ulimit { name: "nofile".into(), soft: 100, hard: 200 });
        assert_eq!(ulimit("core=0").unwrap(), Ulimit { name: "core".into(), soft: 0, hard: 0 });
        assert_eq!(ulimit("memlock=-1:-1").unwrap().hard, -1);
        assert_eq!(ulimit("nproc=5").unwrap().rlimit_type(), "RLIMIT_NPROC");
        assert!(ulimit("nofile=200:100").unwrap_err().to_string().contains("above the hard limit"));
        assert!(ulimit("bogus=1").unwrap_err().to_string().contains("unknown name"));
        assert!(ulimit("nofile").unwrap_err().to_string().contains("NAME=SOFT"));
        assert!(ulimit("nofile=x").unwrap_err().to_string().contains("not a number"));
    }
}
