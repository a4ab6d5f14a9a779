//! Where rcon keeps its state: every path can be moved (tests run isolated worlds).

use std::path::PathBuf;

/// The three roots every command works under.
#[derive(Debug, Clone)]
pub struct Context {
    /// Runtime state (containers), tmpfs like runc: `--root`, RCON_ROOT.
    pub root: PathBuf,
    /// Named network namespaces, shared with `ip netns`: `--netns-dir`, RCON_NETNS_DIR.
    pub netns_dir: PathBuf,
    /// Persistent data (networks, leases, images): `--data-root`, RCON_DATA_ROOT.
    pub data_root: PathBuf,
}

impl Context {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}
