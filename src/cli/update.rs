//! `rcon update`: change a running container's limits, as runc's `update`
//! (flags, or a LinuxResources JSON with -r, `-` for stdin as containerd's
//! shim sends it).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use oci_spec::runtime::LinuxResources;
use rcon::runtime;
use rcon::Context;
use serde_json::{json, Map, Value};

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Read the resources (OCI LinuxResources JSON) from FILE, or stdin with `-`.
    #[arg(short = 'r', long = "resources", value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k, m, g).
    #[arg(long, short = 'm', value_parser = bytes)]
    pub memory: Option<i64>,
    /// Memory plus swap limit (bytes, or with k, m, g; -1 is unlimited).
    #[arg(long, value_parser = bytes, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Soft memory limit (bytes, or with k, m, g).
    #[arg(long, value_parser = bytes)]
    pub memory_reservation: Option<i64>,
    /// CPUs the container may use in each period (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU CFS period (µs).
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota (µs per period).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0-3, 0,1).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Most processes the container may have (-1 or 0: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

/// A size: digits with an optional k, m or g (powers of 1024); -1 passes.
fn bytes(s: &str) -> Result<i64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not a size (bytes, or a number with k, m or g)"))?;
    if n == -1 && mult == 1 {
        return Ok(-1);
    }
    if n < 0 {
        return Err(format!("{s:?} is negative"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// The request as LinuxResources: the -r JSON, then each flag over it.
fn resources(a: &UpdateArgs) -> Result<LinuxResources> {
    let mut v = match &a.resources {
        Some(p) if p.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading resources from stdin")?;
            serde_json::from_str(&text).context("-r -: not a LinuxResources JSON object")?
        }
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("-r {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("-r {}: not a LinuxResources JSON object", p.display()))?
        }
        None => json!({}),
    };
    let Value::Object(root) = &mut v else { bail!("-r: the resources must be a JSON object") };
    let mut set = |section: &str, key: &str, value: Value| {
        let s = root.entry(section).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = s {
            m.insert(key.into(), value);
        }
    };
    let mut quota = a.cpu_quota.map(Value::from);
    let mut period = a.cpu_period.map(Value::from);
    if let Some(cpus) = a.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            bail!("--cpus {cpus}: must be above 0");
        }
        let p = a.cpu_period.unwrap_or(100_000);
        period = Some(p.into());
        quota = Some(((cpus * p as f64).round() as i64).into());
    }
    let flags = [
        ("memory", "limit", a.memory.map(Value::from)),
        ("memory", "swap", a.memory_swap.map(Value::from)),
        ("memory", "reservation", a.memory_reservation.map(Value::from)),
        ("cpu", "period", period),
        ("cpu", "quota", quota),
        ("cpu", "shares", a.cpu_shares.map(Value::from)),
        ("cpu", "cpus", a.cpuset_cpus.clone().map(Value::from)),
        ("cpu", "mems", a.cpuset_mems.clone().map(Value::from)),
        ("pids", "limit", a.pids_limit.map(Value::from)),
    ];
    for (section, key, value) in flags {
        if let Some(v) = value {
            set(section, key, v);
        }
    }
    if root.is_empty() {
        bail!("update: nothing to change: give -r FILE or a limit flag (--memory, --cpus, --pids-limit, ...)");
    }
    serde_json::from_value(v).context("update: the resources do not fit the OCI LinuxResources schema")
}

pub fn update(ctx: &Context, a: UpdateArgs) -> Result<i32> {
    let r = resources(&a)?;
    let id = rcon::engine::names::resolve(ctx, &a.id)?;
    runtime::update(ctx, &id, &r)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes("256m"), Ok(256 << 20));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("512kb"), Ok(512 << 10));
        assert_eq!(bytes("4096"), Ok(4096));
        assert_eq!(bytes("-1"), Ok(-1));
        assert!(bytes("-2m").unwrap_err().contains("negative"));
        assert!(bytes("lots").unwrap_err().contains("not a size"));
    }
}
