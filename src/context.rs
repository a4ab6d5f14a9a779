//! Where rcon keeps its state: every path can be moved (tests run isolated worlds).

use std::path::{Path, PathBuf};

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// The three roots every command works under.
#[derive(Debug, Clone)]
pub struct Context {
    /// Runtime state (containers), tmpfs like runc: `--root`, RCON_ROOT.
    pub root: PathBuf,
    /// Named network namespaces, shared with `ip netns`: `--netns-dir`, RCON_NETNS_DIR.
    pub netns_dir: PathBuf,
    /// Persistent data (networks, leases, images): `--data-root`, RCON_DATA_ROOT.
    pub data_root: PathBuf,
    /// Firewall backend for new networks: `--firewall-backend`, RCON_FIREWALL_BACKEND or config.json.
    pub firewall: FirewallBackend,
}

/// The `firewall_backend` of `<data-root>/config.json`, nftables without one.
pub fn configured_firewall(data_root: &Path) -> Result<FirewallBackend> {
    let p = data_root.join("config.json");
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(FirewallBackend::default()) };
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?;
    match v.get("firewall_backend").and_then(|b| b.as_str()) {
        Some(b) => b.parse().with_context(|| format!("{}: field firewall_backend", p.display())),
        None => Ok(FirewallBackend::default()),
    }
}

impl Context {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

/// Which program speaks to the kernel's packet filter. It lives here, not in
/// net's firewall, because the context chooses it per data root; net re-exports
/// it as `firewall::Backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallBackend {
    #[default]
    Nftables,
    Iptables,
}

impl FromStr for FirewallBackend {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<FirewallBackend> {
        match s {
            "nftables" => Ok(FirewallBackend::Nftables),
            "iptables" => Ok(FirewallBackend::Iptables),
            _ => bail!("unknown firewall backend {s:?}: choose nftables or iptables"),
        }
    }
}

impl fmt::Display for FirewallBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FirewallBackend::Nftables => "nftables",
            FirewallBackend::Iptables => "iptables",
        })
    }
}
