//! Endpoint records: one per interface rcon put into a namespace, written
//! *before* any kernel object is made, so that detach and `rcon gc` can
//! always find the veth, the lease and the record itself.
//!
//! `<data-root>/endpoints/<network>/<key>.json`, where the key hashes the
//! network, the namespace's identity (device and inode of its nsfs file)
//! and the interface name: the same interface always gets the same key.
//! See [`Store`] for the indexes.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::net::macaddr::Mac;
use crate::store::{Broken, Listing, Read};
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
    pub mac: Mac,
    pub gateway: Option<Ipv4Addr>,
    /// Host ports published to this interface's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<super::ports::Mapping>,
    /// The names rcon's resolver answers with this address on this network (the container's name
    /// and `--network-alias`es, a pod's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
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
    format!("{}{}", if parked { "rp" } else { "rv" }, key.get(..10).unwrap_or(key))
}

/// The key of a broken endpoint record (named `<network>/<key>`).
pub fn broken_key(b: &Broken) -> &str {
    b.name.rsplit_once('/').map_or(b.name.as_str(), |(_, k)| k)
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
pub fn mac_for(key: &str) -> Mac {
    let h = super::short_hash(&format!("mac/{key}"));
    let b = |i: usize| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0);
    Mac([0x02, b(0), b(1), b(2), b(3), b(4)])
}

/// Records are stored by network, `<data-root>/endpoints/<network>/<key>.json`,
/// and indexed by namespace and by owner with symlinks to them:
/// `endpoints/.netns/<ns tag>/<network>.<key>` and
/// `endpoints/.owner/<owner tag>/<network>.<key>`. So finding a namespace's or a
/// container's endpoints reads a directory of a few entries, and attach and
/// delete stay as fast at 1000 endpoints as at 10. The links are made before
/// the record and removed after it: a record is always reachable from its
/// indexes, and a dangling link (a crash in between) is skipped, then swept by gc.
pub struct Store {
    dir: PathBuf,
}

/// The two indexes, by the directory names under `endpoints/`.
const BY_NETNS: &str = ".netns";
const BY_OWNER: &str = ".owner";

fn owner_tag(owner: &str) -> String {
    super::short_hash(&format!("owner/{owner}"))[..16].to_string()
}

fn netns_tag(netns_id: &str) -> String {
    super::short_hash(&format!("netns/{netns_id}"))[..16].to_string()
}

/// What to look for: every given field must match.
#[derive(Debug, Default, Clone, Copy)]
pub struct Filter<'a> {
    pub network: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub netns_id: Option<&'a str>,
}

impl Filter<'_> {
    fn matches(&self, ep: &Endpoint) -> bool {
        self.network.is_none_or(|n| ep.network == n)
            && self.owner.is_none_or(|o| ep.owner.as_deref() == Some(o))
            && self.netns_id.is_none_or(|n| ep.netns_id == n)
    }
}

/// The names in `dir` (none when it does not exist), dot files (temporaries) left out.
fn names(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect()
}

impl Store {
    pub fn new(data_root: &Path) -> Store {
        Store { dir: data_root.join("endpoints") }
    }

    fn path(&self, ep: &Endpoint) -> PathBuf {
        self.dir.join(&ep.network).join(format!("{}.json", ep.key))
    }

    /// `ep` has a record (an attach that failed early has none yet).
    pub fn recorded(&self, ep: &Endpoint) -> bool {
        self.path(ep).exists()
    }

    /// The index directories that hold a link to `ep`.
    fn index_dirs(&self, ep: &Endpoint) -> Vec<PathBuf> {
        let mut dirs = vec![self.dir.join(BY_NETNS).join(netns_tag(&ep.netns_id))];
        if let Some(o) = &ep.owner {
            dirs.push(self.dir.join(BY_OWNER).join(owner_tag(o)));
        }
        dirs
    }

    fn link_name(ep: &Endpoint) -> String {
        format!("{}.{}", ep.network, ep.key)
    }

    pub fn save(&self, ep: &Endpoint) -> Result<()> {
        let p = self.path(ep);
        fs::create_dir_all(p.parent().unwrap()).context("creating the endpoint store")?;
        let target = Path::new("../..").join(&ep.network).join(format!("{}.json", ep.key));
        for dir in self.index_dirs(ep) {
            // gc's `sweep_index` removes an index dir the moment it is empty,
            // which may fall between our mkdir and our link: make it again.
            let mut tries = 0;
            loop {
                fs::create_dir_all(&dir).context("creating the endpoint index")?;
                match std::os::unix::fs::symlink(&target, dir.join(Self::link_name(ep))) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => tries += 1,
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(e).context("indexing the endpoint record")
                    }
                    _ => break,
                }
            }
        }
        crate::store::write_json(&p, ep)
    }

    pub fn remove(&self, ep: &Endpoint) -> Result<()> {
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        gone(fs::remove_file(self.path(ep))).context("removing the endpoint record")?;
        for dir in self.index_dirs(ep) {
            gone(fs::remove_file(dir.join(Self::link_name(ep)))).context("removing the endpoint index")?;
            // The last link out takes the directory along (not empty: fine).
            let _ = fs::remove_dir(&dir);
        }
        Ok(())
    }

    /// The records that match `f`, sorted by address. By namespace or owner
    /// through an index; by network from that network's directory. Records
    /// that cannot be read are left out (see `scan`).
    pub fn find(&self, f: Filter) -> Result<Vec<Endpoint>> {
        Ok(self.scan(f)?.good)
    }

    /// `find`, with the records that match as far as their path tells and
    /// cannot be read (named `<network>/<key>`, at their record's path).
    pub fn scan(&self, f: Filter) -> Result<Listing<Endpoint>> {
        // (network, key) of each candidate, from its index link or its path.
        let files: Vec<(String, String)> = if let Some(dir) = f
            .netns_id
            .map(|n| self.dir.join(BY_NETNS).join(netns_tag(n)))
            .or_else(|| f.owner.map(|o| self.dir.join(BY_OWNER).join(owner_tag(o))))
        {
            names(&dir)
                .iter()
                .filter_map(|n| n.rsplit_once('.'))
                .filter(|(net, _)| f.network.is_none_or(|want| want == *net))
                .map(|(net, key)| (net.to_string(), key.to_string()))
                .collect()
        } else {
            let nets = match f.network {
                Some(n) => vec![n.to_string()],
                None => names(&self.dir),
            };
            nets.iter()
                .flat_map(|n| {
                    let keys = names(&self.dir.join(n));
                    keys.into_iter().filter_map(move |k| Some((n.clone(), k.strip_suffix(".json")?.to_string())))
                })
                .collect()
        };
        let mut out = Listing::default();
        for (net, key) in files {
            let p = self.dir.join(&net).join(format!("{key}.json"));
            match crate::store::read_record::<Endpoint>(&p) {
                Read::Good(ep) if f.matches(&ep) => out.good.push(ep),
                Read::Good(_) => {}
                Read::Bad(cause) => out.broken.push(Broken::new("endpoint", format!("{net}/{key}"), &p, cause)),
                // Being removed, or an index link left dangling by a crash: skipped.
                Read::Gone => {}
            }
        }
        out.good.sort_by_key(|e| e.ip);
        Ok(out)
    }

    pub fn on_network(&self, network: &str) -> Result<Vec<Endpoint>> {
        self.find(Filter { network: Some(network), ..Default::default() })
    }

    pub fn all(&self) -> Result<Vec<Endpoint>> {
        self.find(Filter::default())
    }

    /// Every record, and every one that cannot be read (gc, `network inspect`).
    pub fn scan_all(&self, network: Option<&str>) -> Result<Listing<Endpoint>> {
        self.scan(Filter { network, ..Default::default() })
    }

    /// Remove index links whose record is gone (a crash between the two) and
    /// empty index directories. Returns how many links went. Only links older
    /// than `min_age`: a save makes its links microseconds before its record,
    /// and a young dangling link may be one of those.
    pub fn sweep_index(&self, min_age: std::time::Duration) -> usize {
        let mut swept = 0;
        for index in [BY_NETNS, BY_OWNER] {
            let root = self.dir.join(index);
            for tag in names(&root) {
                let dir = root.join(&tag);
                for link in names(&dir) {
                    let p = dir.join(&link);
                    let old = fs::symlink_metadata(&p)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= min_age));
                    if old && !p.exists() && fs::remove_file(&p).is_ok() {
                        swept += 1;
                    }
                }
                let _ = fs::remove_dir(&dir);
            }
        }
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_parse_back() {
        let m = mac_for("abc");
        assert_eq!(m.octets()[0], 0x02);
        assert_eq!(Mac::for_interface(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn find_by_owner_namespace_and_network_through_indexes() {
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
            mac: "02:00:00:00:00:01".parse().unwrap(),
            gateway: None,
            ports: Vec::new(),
            names: Vec::new(),
        };
        st.save(&ep("a", Some("c1"), "1:1", "k1")).unwrap();
        st.save(&ep("b", Some("c1"), "1:1", "k2")).unwrap();
        st.save(&ep("a", None, "1:2", "k3")).unwrap();
        let f = |owner, netns_id| Filter { owner, netns_id, network: None };
        assert_eq!(st.find(f(Some("c1"), None)).unwrap().len(), 2);
        assert_eq!(st.find(f(None, Some("1:2"))).unwrap()[0].key, "k3");
        assert_eq!(st.on_network("a").unwrap().len(), 2);
        assert_eq!(st.find(Filter { network: Some("b"), owner: Some("c1"), netns_id: None }).unwrap()[0].key, "k2");
        assert!(st.find(f(Some("c2"), None)).unwrap().is_empty());
        st.remove(&ep("a", None, "1:2", "k3")).unwrap();
        assert_eq!(st.all().unwrap().len(), 2);
        assert!(!dir.path().join("endpoints/.netns").join(netns_tag("1:2")).exists());

        // A crash after the links, before the record: skipped, then swept.
        let half = ep("a", Some("c3"), "1:3", "k4");
        st.save(&half).unwrap();
        fs::remove_file(st.path(&half)).unwrap();
        assert!(st.find(f(Some("c3"), None)).unwrap().is_empty());
        assert_eq!(st.sweep_index(std::time::Duration::from_secs(60)), 0);
        assert_eq!(st.sweep_index(std::time::Duration::ZERO), 2);
        assert!(!dir.path().join("endpoints/.owner").join(owner_tag("c3")).exists());
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
