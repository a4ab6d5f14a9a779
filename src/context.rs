//! Where rcon keeps its state: every path can be moved (tests run isolated worlds).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::net::firewall::Backend;

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
    pub firewall: Backend,
}

/// The `firewall_backend` of `<data-root>/config.json`, nftables without one.
pub fn configured_firewall(data_root: &Path) -> Result<Backend> {
    let p = data_root.join("config.json");
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(Backend::default()) };
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?;
    match v.get("firewall_backend").and_then(|b| b.as_str()) {
        Some(b) => b.parse().with_context(|| format!("{}: field firewall_backend", p.display())),
        None => Ok(Backend::default()),
    }
}

impl Context {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}
