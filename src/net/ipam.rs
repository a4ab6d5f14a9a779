//! IPAM: address leases per network, persistent and safe across processes. IPv4 only.
//!
//! A network's leases are one JSON file, `<data_root>/ipam/<net>.json`, beside
//! `<net>.lock`. The flock is taken on the separate lock file because the JSON file is
//! replaced by rename, and a lock on a replaced inode guards nothing. Every
//! read-modify-write happens under that lock, so concurrent `rcon` processes never hand
//! out one address twice and never lose each other's leases.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::store;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub owner: String,
}

/// The contents of `<net>.json`.
#[derive(Serialize, Deserialize, Default, Clone, PartialEq)]
struct Book {
    /// The last address handed out dynamically; next-fit resumes after it.
    #[serde(default)]
    last: Option<Ipv4Addr>,
    #[serde(default)]
    leases: Vec<Lease>,
}

pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    /// Leases live in <data_root>/ipam/<network>.json, guarded by an flock on <data_root>/ipam/<network>.lock.
    pub fn new(data_root: &Path) -> Ipam {
        Ipam { dir: data_root.join("ipam") }
    }

    fn paths(&self, net: &str) -> Result<(PathBuf, PathBuf)> {
        // A leading '.' would also hide the network from `networks()`.
        if net.is_empty() || net.contains(['/', '\0']) || net.starts_with('.') {
            bail!("invalid network name {net:?}");
        }
        Ok((self.dir.join(format!("{net}.json")), self.dir.join(format!("{net}.lock"))))
    }

    fn read(path: &Path) -> Result<Book> {
        match path.try_exists() {
            Ok(true) => store::read_json(path),
            Ok(false) => Ok(Book::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Read, change and write the network's book, all under its lock.
    fn update<T>(&self, net: &str, change: impl FnOnce(&mut Book) -> Result<T>) -> Result<T> {
        let (file, lock) = self.paths(net)?;
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let _guard = store::lock(&lock)?;
        let before = Self::read(&file)?;
        let mut book = before.clone();
        let out = change(&mut book)?;
        if book != before {
            // Atomic (rename) but not fsynced: every lease's endpoint dies with
            // the machine, and after a power cut gc releases them all anyway
            // (their namespaces are gone). An fsync per attach would cost more
            // than the rest of the attach. Compact JSON: the book is re-read
            // and re-written whole by every attach.
            store::write_atomic(&file, &serde_json::to_vec(&book)?)?;
        }
        Ok(out)
    }

    /// An address in `subnet` for `owner` on network `net` (idempotent per owner; `want` asks
    /// for a static address). Dynamic allocation is next-fit, as CNI host-local does, so that
    /// a just-released address is not reused while stale ARP entries may still point at it.
    pub fn allocate(
        &self,
        net: &str,
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        let subnet = subnet.trunc();
        self.update(net, |book| {
            if let Some(l) = book.leases.iter().find(|l| l.owner == owner) {
                match want {
                    Some(w) if w != l.ip => bail!("network {net}: {owner} already holds {}, not {w}", l.ip),
                    _ => return Ok(l.ip),
                }
            }
            let (first, last) = usable(&subnet);
            let ip = match want {
                Some(w) => {
                    if !subnet.contains(&w) {
                        bail!("network {net}: {w} is outside the subnet {subnet}");
                    }
                    if Some(w) == gateway {
                        bail!("network {net}: {w} is the gateway");
                    }
                    if !(first..=last).contains(&u32::from(w)) {
                        bail!("network {net}: {w} is the network or broadcast address of {subnet}");
                    }
                    if let Some(l) = book.leases.iter().find(|l| l.ip == w) {
                        bail!("network {net}: {w} is already leased to {}", l.owner);
                    }
                    w
                }
                None => {
                    let used: HashSet<u32> = book.leases.iter().map(|l| u32::from(l.ip)).collect();
                    let size = u64::from(last - first) + 1;
                    let start = match book.last.map(u32::from) {
                        Some(p) if p >= first && p < last => p + 1,
                        _ => first,
                    };
                    let free = (0..size)
                        .map(|i| (u64::from(first) + (u64::from(start - first) + i) % size) as u32)
                        .find(|a| !used.contains(a) && Some(Ipv4Addr::from(*a)) != gateway);
                    let Some(a) = free else {
                        bail!("network {net}: no free address in {subnet} ({} leased)", book.leases.len());
                    };
                    book.last = Some(Ipv4Addr::from(a));
                    Ipv4Addr::from(a)
                }
            };
            book.leases.push(Lease { ip, owner: owner.to_string() });
            Ok(ip)
        })
    }

    /// Release whatever `owner` holds on `net`. Idempotent (no lease, no file: Ok).
    pub fn release(&self, net: &str, owner: &str) -> Result<()> {
        let (file, _) = self.paths(net)?;
        if !file.exists() {
            return Ok(()); // don't create the dir and lock file just to find nothing
        }
        self.update(net, |book| {
            book.leases.retain(|l| l.owner != owner);
            Ok(())
        })
    }

    /// All leases on `net`, sorted by address (no file: empty). Readers need no lock:
    /// the file is only ever replaced whole.
    pub fn leases(&self, net: &str) -> Result<Vec<Lease>> {
        let (file, _) = self.paths(net)?;
        let mut leases = Self::read(&file)?.leases;
        leases.sort_by_key(|l| l.ip);
        Ok(leases)
    }

    /// Every network that has a lease file (for gc).
    pub fn networks(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.dir.display())),
        };
        let mut nets = Vec::new();
        for entry in entries {
            let name = entry.with_context(|| format!("listing {}", self.dir.display()))?.file_name();
            let name = name.to_string_lossy();
            // Dot files are write_atomic's temporaries.
            if let Some(net) = name.strip_suffix(".json").filter(|n| !n.is_empty() && !n.starts_with('.')) {
                nets.push(net.to_string());
            }
        }
        nets.sort();
        Ok(nets)
    }

    /// Remove the network's lease file and lock file (network rm).
    pub fn drop_network(&self, net: &str) -> Result<()> {
        for path in <[PathBuf; 2]>::from(self.paths(net)?) {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The first and last assignable address; /31 and /32 reserve nothing (RFC 3021).
fn usable(subnet: &Ipv4Net) -> (u32, u32) {
    let (net, bcast) = (u32::from(subnet.network()), u32::from(subnet.broadcast()));
    if subnet.prefix_len() >= 31 {
        (net, bcast)
    } else {
        (net + 1, bcast - 1)
    }
}

/// Docker-like default pool for new bridge networks: 172.17.0.0/16 … 172.31.0.0/16, then
/// 192.168.0.0/20 … 192.168.240.0/20; the first that overlaps none of `taken`.
/// Default routes (/0) in `taken` are ignored: they would overlap every candidate.
pub fn pick_subnet(taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    let b = (17..=31).map(|o| Ipv4Net::new(Ipv4Addr::new(172, o, 0, 0), 16).unwrap());
    let c = (0..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).unwrap());
    b.chain(c).find(|cand| !taken.iter().any(|t| t.prefix_len() > 0 && overlaps(cand, t))).context(
        "no free subnet in the default pools (172.17-31.0.0/16, 192.168.0-240.0/20): give the network a subnet",
    )
}

/// Whether two subnets overlap.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Allocate until exhausted; returns everything handed out.
    fn drain(ipam: &Ipam, subnet: &str, gw: Option<Ipv4Addr>) -> Vec<Ipv4Addr> {
        (0..).map_while(|i| ipam.allocate("n", n(subnet), gw, &format!("c{i}"), None).ok()).collect()
    }

    #[test]
    fn reserved_addresses_never_handed_out() {
        let d = tempfile::tempdir().unwrap();
        let got = drain(&Ipam::new(d.path()), "10.0.0.0/24", Some(a("10.0.0.1")));
        assert_eq!(got.len(), 253);
        assert!(!got.contains(&a("10.0.0.0")) && !got.contains(&a("10.0.0.255")) && !got.contains(&a("10.0.0.1")));

        let d = tempfile::tempdir().unwrap();
        assert_eq!(drain(&Ipam::new(d.path()), "10.0.0.4/30", Some(a("10.0.0.5"))), [a("10.0.0.6")]);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(drain(&Ipam::new(d.path()), "10.0.0.4/31", None), [a("10.0.0.4"), a("10.0.0.5")]);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(drain(&Ipam::new(d.path()), "10.0.0.4/31", Some(a("10.0.0.4"))), [a("10.0.0.5")]);
    }

    #[test]
    fn idempotent_per_owner_and_static_checks() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let (s, gw) = (n("10.1.0.0/24"), Some(a("10.1.0.1")));
        let ip = ipam.allocate("n", s, gw, "c1", None).unwrap();
        assert_eq!(ipam.allocate("n", s, gw, "c1", None).unwrap(), ip);
        assert_eq!(ipam.allocate("n", s, gw, "c1", Some(ip)).unwrap(), ip);
        assert!(ipam.allocate("n", s, gw, "c1", Some(a("10.1.0.50"))).is_err());

        let err = |want: &str| ipam.allocate("n", s, gw, "c2", Some(a(want))).unwrap_err().to_string();
        assert!(err("10.2.0.5").contains("outside"), "{}", err("10.2.0.5"));
        assert!(err("10.1.0.0").contains("network or broadcast"));
        assert!(err("10.1.0.255").contains("network or broadcast"));
        assert!(err("10.1.0.1").contains("gateway"));
        assert!(err(&ip.to_string()).contains("leased to c1"), "{}", err(&ip.to_string()));
        assert_eq!(ipam.allocate("n", s, gw, "c2", Some(a("10.1.0.77"))).unwrap(), a("10.1.0.77"));
        assert_eq!(ipam.leases("n").unwrap().len(), 2);
        assert!(ipam.allocate("a/b", s, gw, "c3", None).is_err());
        assert!(ipam.allocate("", s, gw, "c3", None).is_err());
    }

    #[test]
    fn next_fit_release_exhaustion_and_persistence() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let s = n("10.2.0.0/29"); // .1 gateway, .2-.6 usable
        let gw = Some(a("10.2.0.1"));
        let first = ipam.allocate("n", s, gw, "c0", None).unwrap();
        assert_eq!(first, a("10.2.0.2"));
        ipam.release("n", "c0").unwrap();
        ipam.release("n", "c0").unwrap();
        ipam.release("none", "c0").unwrap();
        assert_eq!(ipam.allocate("n", s, gw, "c1", None).unwrap(), a("10.2.0.3"));

        // A fresh instance sees the leases and the next-fit position.
        let ipam = Ipam::new(d.path());
        assert_eq!(ipam.allocate("n", s, gw, "c2", None).unwrap(), a("10.2.0.4"));
        for o in ["c3", "c4"] {
            ipam.allocate("n", s, gw, o, None).unwrap();
        }
        // Wraps around to the released .2.
        assert_eq!(ipam.allocate("n", s, gw, "c5", None).unwrap(), a("10.2.0.2"));
        let err = ipam.allocate("n", s, gw, "c6", None).unwrap_err().to_string();
        assert_eq!(err, "network n: no free address in 10.2.0.0/29 (5 leased)");

        let leases = ipam.leases("n").unwrap();
        assert!(leases.windows(2).all(|w| w[0].ip < w[1].ip));
        assert_eq!(ipam.networks().unwrap(), ["n"]);
        ipam.drop_network("n").unwrap();
        ipam.drop_network("n").unwrap();
        assert!(ipam.networks().unwrap().is_empty() && ipam.leases("n").unwrap().is_empty());
        assert_eq!(fs::read_dir(d.path().join("ipam")).unwrap().count(), 0);
    }

    #[test]
    fn pick_subnet_skips_overlaps() {
        assert_eq!(pick_subnet(&[]).unwrap(), n("172.17.0.0/16"));
        assert_eq!(pick_subnet(&[n("172.17.5.0/24"), n("0.0.0.0/0")]).unwrap(), n("172.18.0.0/16"));
        assert_eq!(pick_subnet(&[n("172.16.0.0/12")]).unwrap(), n("192.168.0.0/20"));
        assert_eq!(pick_subnet(&[n("172.16.0.0/12"), n("192.168.1.0/24")]).unwrap(), n("192.168.16.0/20"));
        assert!(pick_subnet(&[n("172.16.0.0/12"), n("192.168.0.0/16")]).is_err());
        assert!(overlaps(&n("10.0.0.0/8"), &n("10.1.2.0/24")) && overlaps(&n("10.1.2.0/24"), &n("10.0.0.0/8")));
        assert!(!overlaps(&n("10.0.0.0/24"), &n("10.0.1.0/24")));
    }

    #[test]
    fn concurrent_allocations_are_distinct_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let root = root.clone();
                // Each thread opens the lock file itself: flock is per open file description.
                std::thread::spawn(move || {
                    let ipam = Ipam::new(&root);
                    (0..6)
                        .map(|i| ipam.allocate("n", n("10.3.0.0/24"), Some(a("10.3.0.1")), &format!("t{t}-{i}"), None))
                        .collect::<Result<Vec<_>>>()
                        .unwrap()
                })
            })
            .collect();
        let got: Vec<Ipv4Addr> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let distinct: HashSet<_> = got.iter().collect();
        assert_eq!((got.len(), distinct.len()), (96, 96));
        let leased: HashSet<_> = Ipam::new(&root).leases("n").unwrap().into_iter().map(|l| l.ip).collect();
        assert_eq!(leased, got.iter().copied().collect());
    }
}
