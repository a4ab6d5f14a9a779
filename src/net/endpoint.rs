//! Endpoint records: one per interface rcon put into a namespace, written
//! *before* any kernel object is made, so that detach and `rcon gc` can
//! always find the veth, the lease and the record itself.
//!
//! `<data-root>/endpoints/<network>/<key>.json`, where the key hashes the
//! network, the namespace's identity (device and inode of its nsfs file)
//! and the interface name: the same interface always gets the same key.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub key: String,
    /// The namespace file given at attach time, and its identity then.
    pub netns: PathBuf,
    pub netns_id: String,
    /// The container (or pod) this interface belongs to, when there is one.
    pub owner: Option<String>,
    /// The interface inside the namespace (eth0, eth1 …).
    pub ifname: String,
    /// The node-side veth end (bridge/routed), or the parked end (veth driver).
    pub host_ifname: String,
    pub ip: Option<Ipv4Addr>,
    pub prefix: u8,
    pub mac: String,
    pub gateway: Option<Ipv4Addr>,
}

impl Endpoint {
    /// Whether the namespace this endpoint lives in still exists (the same one, not a reused path).
    pub fn netns_alive(&self) -> bool {
        ns_identity(&self.netns).is_ok_and(|id| id == self.netns_id)
    }

    pub fn cidr(&self) -> Option<String> {
        self.ip.map(|ip| format!("{ip}/{}", self.prefix))
    }
}

/// "dev:inode" of a namespace file: what tells two namespaces apart.
pub fn ns_identity(path: &Path) -> Result<String> {
    let md = fs::metadata(path).with_context(|| format!("netns {}", path.display()))?;
    Ok(format!("{}:{}", md.dev(), md.ino()))
}

pub fn key_for(network: &str, netns_id: &str, ifname: &str) -> String {
    super::short_hash(&format!("{network}/{netns_id}/{ifname}"))[..16].to_string()
}

/// A locally administered unicast MAC derived from the key (stable, no randomness needed).
pub fn mac_for(key: &str) -> [u8; 6] {
    let h = super::short_hash(&format!("mac/{key}"));
    let b = |i: usize| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0);
    [0x02, b(0), b(1), b(2), b(3), b(4)]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || anyhow::anyhow!("--mac {s:?}: use six hex bytes like 02:42:ac:11:00:02");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        anyhow::bail!("--mac {s}: a multicast address cannot name an interface");
    }
    Ok(mac)
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(data_root: &Path) -> Store {
        Store { dir: data_root.join("endpoints") }
    }

    fn path(&self, network: &str, key: &str) -> PathBuf {
        self.dir.join(network).join(format!("{key}.json"))
    }

    pub fn save(&self, ep: &Endpoint) -> Result<()> {
        let p = self.path(&ep.network, &ep.key);
        fs::create_dir_all(p.parent().unwrap()).context("creating the endpoint store")?;
        crate::store::write_json(&p, ep)
    }

    pub fn remove(&self, ep: &Endpoint) -> Result<()> {
        match fs::remove_file(self.path(&ep.network, &ep.key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the endpoint record"),
            _ => {
                let _ = fs::remove_dir(self.dir.join(&ep.network));
                Ok(())
            }
        }
    }

    pub fn on_network(&self, network: &str) -> Result<Vec<Endpoint>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.dir.join(network)) else { return Ok(out) };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                // A record being replaced may vanish under us: skip it.
                if let Ok(ep) = crate::store::read_json::<Endpoint>(&p) {
                    out.push(ep);
                }
            }
        }
        out.sort_by(|a, b| a.ip.cmp(&b.ip));
        Ok(out)
    }

    pub fn all(&self) -> Result<Vec<Endpoint>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&self.dir) else { return Ok(out) };
        for e in rd.flatten() {
            if let Some(net) = e.file_name().to_str() {
                out.extend(self.on_network(net)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_parse_back() {
        let m = mac_for("abc");
        assert_eq!(m[0], 0x02);
        assert_eq!(parse_mac(&format_mac(m)).unwrap(), m);
        assert!(parse_mac("01:00:5e:00:00:01").unwrap_err().to_string().contains("multicast"));
        assert!(parse_mac("zz").is_err());
    }

    #[test]
    fn keys_differ_by_interface_and_namespace() {
        assert_ne!(key_for("n", "1:2", "eth0"), key_for("n", "1:2", "eth1"));
        assert_ne!(key_for("n", "1:2", "eth0"), key_for("n", "1:3", "eth0"));
        assert_eq!(key_for("n", "1:2", "eth0").len(), 16);
    }
}
