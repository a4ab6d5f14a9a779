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

/// Records are stored by network, one file each, named by what finds them:
/// `<data-root>/endpoints/<network>/<key>.<netns tag>.<owner tag>.json`
/// (`-` for no owner). Finding a namespace's or a container's endpoints
/// lists the network directories (a few, of one short entry per endpoint)
/// and reads only the files whose name matches, so the lookups need no
/// index: an attach makes one file (one create and one write), where links
/// in two index directories, their directories and a renamed temporary file
/// took five to seven file creations before.
///
/// The first write of a record is in place: made and filled in one write,
/// under the network's lease book. A crash in between leaves an empty file,
/// which reads as broken; gc, holding the book, removes such a file when
/// the kernel has no veth it names (see `manage::gc_with`). Later writes (a detach taking the ports off)
/// replace the file atomically. Records named `<key>.json` (an older
/// layout) are read as well, and their index links swept.
pub struct Store {
    dir: PathBuf,
}

/// The index directories of the older layout, swept by gc.
const BY_NETNS: &str = ".netns";
const BY_OWNER: &str = ".owner";
/// The owner tag of an endpoint without owner.
const NO_OWNER: &str = "-";

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

    /// The tags a record's file name must carry (computed once per scan: a hash each).
    fn tags(&self) -> (Option<String>, Option<String>) {
        (self.netns_id.map(netns_tag), self.owner.map(owner_tag))
    }
}

/// Whether a record file named `<key>.<netns tag>.<owner tag>` may match the wanted tags (an untagged
/// one may).
fn may_match(want: &(Option<String>, Option<String>), tags: Option<(&str, &str)>) -> bool {
    let Some((ns, owner)) = tags else { return true };
    want.0.as_deref().is_none_or(|n| n == ns) && want.1.as_deref().is_none_or(|o| o == owner)
}

/// The names in `dir` (none when it does not exist), dot files (temporaries) left out.
fn names(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect()
}

/// A record file's name without `.json`: the key, and the two tags when it has them.
fn parse_name(stem: &str) -> (&str, Option<(&str, &str)>) {
    let mut parts = stem.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(key), Some(ns), Some(owner)) => (key, Some((ns, owner))),
        _ => (stem, None),
    }
}

impl Store {
    pub fn new(data_root: &Path) -> Store {
        Store { dir: data_root.join("endpoints") }
    }

    fn path(&self, ep: &Endpoint) -> PathBuf {
        let owner = ep.owner.as_deref().map_or_else(|| NO_OWNER.to_string(), owner_tag);
        self.dir.join(&ep.network).join(format!("{}.{}.{owner}.json", ep.key, netns_tag(&ep.netns_id)))
    }

    /// Where the older layout kept `ep`.
    fn legacy_path(&self, ep: &Endpoint) -> PathBuf {
        self.dir.join(&ep.network).join(format!("{}.json", ep.key))
    }

    /// `ep` has a record (an attach that failed early has none yet).
    pub fn recorded(&self, ep: &Endpoint) -> bool {
        self.path(ep).exists() || self.legacy_path(ep).exists()
    }

    pub fn save(&self, ep: &Endpoint) -> Result<()> {
        let p = self.path(ep);
        let data = serde_json::to_vec_pretty(ep)?;
        let new = fs::OpenOptions::new().write(true).create_new(true).open(&p);
        let new = match new {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(p.parent().unwrap()).context("creating the endpoint store")?;
                fs::OpenOptions::new().write(true).create_new(true).open(&p)
            }
            r => r,
        };
        match new {
            Ok(mut f) => {
                crate::store::fault("endpoint:created");
                std::io::Write::write_all(&mut f, &data).with_context(|| format!("writing {}", p.display()))?;
            }
            // There already: replaced whole, so a reader never sees half of it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => crate::store::write_atomic(&p, &data)?,
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
        match fs::remove_file(self.legacy_path(ep)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the older endpoint record"),
            _ => Ok(()),
        }
    }

    pub fn remove(&self, ep: &Endpoint) -> Result<()> {
        for p in [self.path(ep), self.legacy_path(ep)] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("removing the endpoint record")
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The records that match `f`, sorted by address. Records that cannot
    /// be read are left out (see `scan`).
    pub fn find(&self, f: Filter) -> Result<Vec<Endpoint>> {
        Ok(self.scan(f)?.good)
    }

    /// `find`, with the records that match as far as their file name tells
    /// and cannot be read (named `<network>/<key>`, at their record's path).
    pub fn scan(&self, f: Filter) -> Result<Listing<Endpoint>> {
        let nets = match f.network {
            Some(n) => vec![n.to_string()],
            None => names(&self.dir),
        };
        let want = f.tags();
        let mut out = Listing::default();
        for net in nets {
            for file in names(&self.dir.join(&net)) {
                let Some(stem) = file.strip_suffix(".json") else { continue };
                let (key, tags) = parse_name(stem);
                if !may_match(&want, tags) {
                    continue;
                }
                let p = self.dir.join(&net).join(&file);
                match crate::store::read_record::<Endpoint>(&p) {
                    Read::Good(ep) if f.matches(&ep) => out.good.push(ep),
                    Read::Good(_) => {}
                    Read::Bad(cause) => out.broken.push(Broken::new("endpoint", format!("{net}/{key}"), &p, cause)),
                    // Being removed.
                    Read::Gone => {}
                }
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

    /// Remove the index links of the older layout whose record is gone, and
    /// their empty directories. Returns how many links went. Only links older
    /// than `min_age`, as that layout's save made its links before its record.
    pub fn sweep_index(&self, min_age: std::time::Duration) -> usize {
        let mut swept = 0;
        for index in [BY_NETNS, BY_OWNER] {
            let root = self.dir.join(index);
            for tag in names(&root) {
                let dir = root.join(&tag);
                for link in names(&dir) {
                    let p = dir.join(&link);
                    if old_enough(&p, min_age) && !p.exists() && fs::remove_file(&p).is_ok() {
                        swept += 1;
                    }
                }
                let _ = fs::remove_dir(&dir);
            }
            let _ = fs::remove_dir(&root);
        }
        swept
    }

    /// Remove a record left empty by a crash between its creation and its
    /// write, if it is still empty. The caller holds the network's lease book,
    /// under which every record is made, so no save is in progress.
    pub fn remove_unborn(&self, broken: &Broken) -> bool {
        let p = &broken.path;
        fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0) && fs::remove_file(p).is_ok()
    }
}

/// Whether `p` was last changed at least `min_age` ago.
fn old_enough(p: &Path, min_age: std::time::Duration) -> bool {
    fs::symlink_metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= min_age))
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
        // One file per record, and nothing else.
        let files: Vec<String> = names(&dir.path().join("endpoints/a"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(!dir.path().join("endpoints/.netns").exists() && !dir.path().join("endpoints/.owner").exists());

        // Saved again (the ports taken off): replaced, still one file.
        let mut e1 = ep("a", Some("c1"), "1:1", "k1");
        e1.names = vec!["web".into()];
        st.save(&e1).unwrap();
        assert_eq!(st.find(f(Some("c1"), None)).unwrap().iter().find(|e| e.key == "k1").unwrap().names, ["web"]);
        assert_eq!(names(&dir.path().join("endpoints/a")).len(), 1);

        // A crash between the record's creation and its write: an empty file, broken, found by its
        // tags, removed as unborn once old enough.
        let half = ep("a", Some("c3"), "1:3", "k4");
        fs::write(st.path(&half), "").unwrap();
        let scan = st.scan(Filter { owner: Some("c3"), ..Default::default() }).unwrap();
        assert!(scan.good.is_empty());
        assert_eq!(broken_key(&scan.broken[0]), "k4");
        assert!(st.remove_unborn(&scan.broken[0]));
        fs::write(st.path(&half), "{").unwrap();
        let torn = st.scan(Filter { owner: Some("c3"), ..Default::default() }).unwrap().broken;
        assert!(!st.remove_unborn(&torn[0]), "a torn record is not unborn");
        fs::remove_file(st.path(&half)).unwrap();
        assert_eq!(st.all().unwrap().len(), 2);

        // The older layout: an untagged record is still found (and replaced by a save), and its
        // dangling index links are swept.
        let old = ep("b", Some("c9"), "1:9", "k9");
        fs::write(st.legacy_path(&old), serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(st.find(f(Some("c9"), None)).unwrap().len(), 1);
        assert!(st.recorded(&old));
        st.save(&old).unwrap();
        assert!(!st.legacy_path(&old).exists() && st.path(&old).exists());
        let idx = dir.path().join("endpoints/.netns/abc");
        fs::create_dir_all(&idx).unwrap();
        std::os::unix::fs::symlink("../../b/gone.json", idx.join("b.gone")).unwrap();
        assert_eq!(st.sweep_index(std::time::Duration::ZERO), 1);
        assert!(!dir.path().join("endpoints/.netns").exists());
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
