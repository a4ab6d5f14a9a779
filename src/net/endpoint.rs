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

/// The node-side veth name of endpoint `key`: `rv` and 10 hex digits, or
/// `rp` for the end a veth-driver endpoint parks in the node.
pub fn host_ifname(key: &str, parked: bool) -> String {
    format!("{}{}", if parked { "rp" } else { "rv" }, &key[..10])
}

/// Whether a link name is one `host_ifname` makes (gc's test for "ours").
pub fn is_host_ifname(name: &str) -> bool {
    let hex = name.get(2..).unwrap_or("");
    (name.starts_with("rv") || name.starts_with("rp")) && hex.len() == 10 && hex.bytes().all(|b| b.is_ascii_hexdigit())
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

/// The file name carries short tags of the owner and of the namespace, so
/// that finding a container's or a namespace's endpoints reads names only,
/// not every record: attach and delete stay as fast at 1000 endpoints as at 10.
fn file_name(owner: Option<&str>, netns_id: &str, key: &str) -> String {
    format!("{}.{}.{key}.json", owner_tag(owner), netns_tag(netns_id))
}

fn owner_tag(owner: Option<&str>) -> String {
    owner.map(|o| super::short_hash(&format!("owner/{o}"))[..8].to_string()).unwrap_or_else(|| "-".into())
}

fn netns_tag(netns_id: &str) -> String {
    super::short_hash(&format!("netns/{netns_id}"))[..8].to_string()
}

/// What to look for: every given field must match.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter<'a> {
    pub network: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub netns_id: Option<&'a str>,
}

impl Store {
    pub fn new(data_root: &Path) -> Store {
        Store { dir: data_root.join("endpoints") }
    }

    fn path(&self, ep: &Endpoint) -> PathBuf {
        self.dir.join(&ep.network).join(file_name(ep.owner.as_deref(), &ep.netns_id, &ep.key))
    }

    pub fn save(&self, ep: &Endpoint) -> Result<()> {
        let p = self.path(ep);
        fs::create_dir_all(p.parent().unwrap()).context("creating the endpoint store")?;
        crate::store::write_json(&p, ep)
    }

    pub fn remove(&self, ep: &Endpoint) -> Result<()> {
        match fs::remove_file(self.path(ep)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the endpoint record"),
            _ => Ok(()),
        }
    }

    /// The records that match `f`, sorted by address.
    pub fn find(&self, f: Filter) -> Result<Vec<Endpoint>> {
        let nets: Vec<String> = match f.network {
            Some(n) => vec![n.to_string()],
            None => match fs::read_dir(&self.dir) {
                Ok(rd) => rd.flatten().filter_map(|e| e.file_name().to_str().map(String::from)).collect(),
                Err(_) => Vec::new(),
            },
        };
        let (otag, ntag) = (f.owner.map(|o| owner_tag(Some(o))), f.netns_id.map(netns_tag));
        let mut out = Vec::new();
        for net in nets.iter().filter(|n| !n.starts_with('.')) {
            let Ok(rd) = fs::read_dir(self.dir.join(net)) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                let mut parts = name.split('.');
                let (Some(o), Some(n), Some(_), Some("json"), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if otag.as_deref().is_some_and(|t| t != o) || ntag.as_deref().is_some_and(|t| t != n) {
                    continue;
                }
                // A record being replaced may vanish under us: skip it.
                if let Ok(ep) = crate::store::read_json::<Endpoint>(&e.path()) {
                    if f.owner.is_none_or(|w| ep.owner.as_deref() == Some(w))
                        && f.netns_id.is_none_or(|w| ep.netns_id == w)
                    {
                        out.push(ep);
                    }
                }
            }
        }
        out.sort_by_key(|e| e.ip);
        Ok(out)
    }

    pub fn on_network(&self, network: &str) -> Result<Vec<Endpoint>> {
        self.find(Filter { network: Some(network), ..Default::default() })
    }

    pub fn all(&self) -> Result<Vec<Endpoint>> {
        self.find(Filter::default())
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
    fn find_filters_by_owner_and_namespace_from_names() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::new(dir.path());
        let ep = |net: &str, owner: Option<&str>, ns: &str, key: &str| Endpoint {
            network: net.into(),
            key: key.into(),
            netns: "/x".into(),
            netns_id: ns.into(),
            owner: owner.map(String::from),
            ifname: "eth0".into(),
            host_ifname: "rv0".into(),
            ip: None,
            prefix: 24,
            mac: "02:00:00:00:00:01".into(),
            gateway: None,
        };
        st.save(&ep("a", Some("c1"), "1:1", "k1")).unwrap();
        st.save(&ep("b", Some("c1"), "1:1", "k2")).unwrap();
        st.save(&ep("a", None, "1:2", "k3")).unwrap();
        let f = |owner, netns_id| Filter { owner, netns_id, network: None };
        assert_eq!(st.find(f(Some("c1"), None)).unwrap().len(), 2);
        assert_eq!(st.find(f(None, Some("1:2"))).unwrap()[0].key, "k3");
        assert_eq!(st.on_network("a").unwrap().len(), 2);
        st.remove(&ep("a", None, "1:2", "k3")).unwrap();
        assert_eq!(st.all().unwrap().len(), 2);
    }

    #[test]
    fn keys_differ_by_interface_and_namespace() {
        assert_ne!(key_for("n", "1:2", "eth0"), key_for("n", "1:2", "eth1"));
        assert_ne!(key_for("n", "1:2", "eth0"), key_for("n", "1:3", "eth0"));
        assert_eq!(key_for("n", "1:2", "eth0").len(), 16);
        let k = key_for("n", "1:2", "eth0");
        assert!(is_host_ifname(&host_ifname(&k, false)) && is_host_ifname(&host_ifname(&k, true)));
        assert!(!is_host_ifname("rvfoo") && !is_host_ifname("eth0"));
    }
}
