//! IPAM: address leases per network, persistent and safe across processes. IPv4 only.
//!
//! A network's leases are a directory of symlinks, `<data_root>/ipam/<net>/`,
//! as CNI host-local keeps one file per address:
//!
//! - `10.88.0.5 -> OWNER`: the lease itself. Making it is the allocation: the
//!   kernel refuses a second symlink of that name, so an address can never be
//!   handed out twice, even by processes that ignore the lock.
//! - `last`: a file holding where next-fit resumes, rewritten in place.
//!
//! So an allocation makes one directory entry, the one file creation of a
//! lease. Release goes by the address, which the caller's record holds
//! (an owner alone is found by listing: gc and `service rm`, off the hot
//! path). `owner:OWNER -> ADDRESS` links, which an older layout made as the
//! way back, are still read and removed.
//!
//! Every change is one atomic syscall on a small entry, so the cost of an
//! allocation does not grow with the number of leases (a whole-book JSON file
//! was rewritten per attach before, which showed at 1000 containers). Changes
//! are serialised by an flock on the directory, which callers may hold across
//! their own work ([`Ipam::open`]): attach keeps it until the endpoint record
//! names the address, so `rcon gc` never takes a lease for an orphan in between.
//! Not fsynced: every lease's endpoint dies with the machine, and after a power
//! cut gc releases them all anyway.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use crate::net::macaddr::Mac;
use crate::store::{self, Broken, Listing};

mod mac;
pub use mac::MacLease;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub owner: String,
}

pub struct Ipam {
    dir: PathBuf,
}

/// One network's leases, locked for as long as this lives.
pub struct Book {
    dir: PathBuf,
    net: String,
    _lock: store::Lock,
}

const OWNER: &str = "owner:";
const LAST: &str = "last";
/// Candidates tried one by one before listing the directory instead: next-fit
/// in a roomy subnet finds a free address at once, a crowded one does not.
const BLIND_TRIES: usize = 8;

impl Ipam {
    pub fn new(data_root: &Path) -> Ipam {
        Ipam { dir: data_root.join("ipam") }
    }

    fn net_dir(&self, net: &str) -> Result<PathBuf> {
        // A leading '.' would also hide the network from `networks()`.
        if net.is_empty() || net.contains(['/', '\0']) || net.starts_with('.') {
            bail!("invalid network name {net:?}");
        }
        Ok(self.dir.join(net))
    }

    /// Lock network `net`'s leases (made on first use).
    pub fn open(&self, net: &str) -> Result<Book> {
        let dir = self.net_dir(net)?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let f = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let lock = store::lock_file(f).with_context(|| format!("locking {}", dir.display()))?;
        Ok(Book { dir, net: net.to_string(), _lock: lock })
    }

    /// Allocate under a lock of its own; see [`Book::allocate`] (attach
    /// holds the book across its record instead).
    #[cfg(test)]
    pub fn allocate(
        &self,
        net: &str,
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        self.open(net)?.allocate(subnet, gateway, owner, want)
    }

    /// Release what `owner` holds on `net`: `ip` when the caller knows it (one
    /// lookup), else whatever it holds (a listing); and its MAC when given.
    /// Idempotent (no lease, no directory: Ok).
    pub fn release(&self, net: &str, owner: &str, ip: Option<Ipv4Addr>, mac: Option<Mac>) -> Result<()> {
        if !self.net_dir(net)?.exists() {
            return Ok(()); // don't make the directory just to find nothing
        }
        let book = self.open(net)?;
        match ip {
            Some(ip) => book.release_address(&Lease { ip, owner: owner.to_string() })?,
            None => book.release(owner)?,
        }
        mac.map_or(Ok(()), |m| book.release_mac(&m.to_string(), owner))
    }

    /// All leases on `net`, sorted by address (none yet: empty), and the
    /// broken ones. Readers need no lock: every entry appears and disappears whole.
    pub fn leases(&self, net: &str) -> Result<Listing<Lease>> {
        leases_in(&self.net_dir(net)?)
    }

    /// Who holds `ip` on `net` (none, or no such book: None). One lookup, no lock: a lease appears
    /// and disappears whole.
    pub fn holder(&self, net: &str, ip: Ipv4Addr) -> Result<Option<String>> {
        let p = self.net_dir(net)?.join(ip.to_string());
        match fs::read_link(&p) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Every network that has a lease directory (for gc).
    pub fn networks(&self) -> Result<Vec<String>> {
        let mut nets: Vec<String> = list(&self.dir)?
            .into_iter()
            .filter(|(name, is_dir)| *is_dir && !name.starts_with('.'))
            .map(|(name, _)| name)
            .collect();
        nets.sort();
        Ok(nets)
    }

    /// Remove the network's leases (network rm).
    pub fn drop_network(&self, net: &str) -> Result<()> {
        let dir = self.net_dir(net)?;
        if !dir.exists() {
            return Ok(());
        }
        let _book = self.open(net)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", dir.display())),
            _ => Ok(()),
        }
    }
}

impl Book {
    /// An address in `subnet` for `owner`; `want` asks for a static address
    /// (which `owner` may hold already: then it is just returned). Asked again
    /// without `want`, an owner gets another address: callers ask once (attach
    /// refuses an interface attached already). Dynamic allocation is next-fit, as CNI host-local does, so
    /// that a just-released address is not reused while stale ARP entries may still
    /// point at it.
    pub fn allocate(
        &self,
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        let net = &self.net;
        if owner.is_empty() || owner.contains(['/', '\0']) || owner.len() > 200 {
            bail!("network {net}: invalid lease owner {owner:?}");
        }
        if let Some(w) = want.filter(|w| self.read_link(&w.to_string()).ok().flatten().as_deref() == Some(owner)) {
            return Ok(w);
        }
        let subnet = subnet.trunc();
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
                if !self.take(w, owner)? {
                    let lease = self.dir.join(w.to_string());
                    match fs::read_link(&lease) {
                        Ok(holder) => bail!("network {net}: {w} is already leased to {}", holder.display()),
                        Err(e) => bail!("network {net}: {w} is taken: lease {} is unreadable: {e}", lease.display()),
                    }
                }
                w
            }
            None => {
                let size = u64::from(last - first) + 1;
                let start = match self.last()?.map(u32::from) {
                    Some(p) if p >= first && p < last => p + 1,
                    _ => first,
                };
                let ring = (0..size)
                    .map(|i| (u64::from(first) + (u64::from(start - first) + i) % size) as u32)
                    .map(Ipv4Addr::from)
                    .filter(|a| Some(*a) != gateway);
                let mut got = None;
                let mut used: Option<HashSet<Ipv4Addr>> = None;
                for (i, a) in ring.enumerate() {
                    if i == BLIND_TRIES {
                        used = Some(taken(&leases_in(&self.dir)?));
                    }
                    if used.as_ref().is_some_and(|u| u.contains(&a)) {
                        continue;
                    }
                    if self.take(a, owner)? {
                        got = Some(a);
                        break;
                    }
                }
                let Some(a) = got else {
                    let n = taken(&leases_in(&self.dir)?).len();
                    bail!("network {net}: no free address in {subnet} ({n} leased)");
                };
                self.set_last(a)?;
                a
            }
        };
        Ok(ip)
    }

    /// Release whatever `owner` holds (a listing). Idempotent.
    pub fn release(&self, owner: &str) -> Result<()> {
        for lease in self.leases()?.good.into_iter().filter(|l| l.owner == owner) {
            self.release_address(&lease)?;
        }
        // An older layout's way back.
        self.remove(&format!("{OWNER}{owner}"))
    }

    /// Release one lease by its address, if `lease.owner` holds it (and the
    /// older layout's way back to it).
    pub fn release_address(&self, lease: &Lease) -> Result<()> {
        let ip = lease.ip.to_string();
        if self.read_link(&ip)?.as_deref() == Some(lease.owner.as_str()) {
            self.remove(&ip)?;
        }
        let back = format!("{OWNER}{}", lease.owner);
        if self.read_link(&back)?.as_deref() == Some(ip.as_str()) {
            self.remove(&back)?;
        }
        Ok(())
    }

    pub fn leases(&self) -> Result<Listing<Lease>> {
        leases_in(&self.dir)
    }

    /// Make the lease `ip -> owner`; false when somebody holds `ip` already.
    fn take(&self, ip: Ipv4Addr, owner: &str) -> Result<bool> {
        let p = self.dir.join(ip.to_string());
        match symlink(owner, &p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("making lease {}", p.display())),
        }
    }

    fn read_link(&self, name: &str) -> Result<Option<String>> {
        let p = self.dir.join(name);
        match fs::read_link(&p) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Where next-fit resumes: a small file rewritten in place. Not a link
    /// renamed over: every inode freed per attach slows the next inode
    /// allocations on ext4 without a journal (it skips recently freed ones),
    /// a cost that grows over a run of attaches. A torn write reads as no hint.
    fn last(&self) -> Result<Option<Ipv4Addr>> {
        match fs::read_to_string(self.dir.join(LAST)) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.dir.join(LAST).display())),
        }
    }

    fn set_last(&self, ip: Ipv4Addr) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let p = self.dir.join(LAST);
        // Fixed width, no truncation: the file keeps its inode and its size.
        let text = format!("{:<15}\n", ip.to_string());
        let f = fs::OpenOptions::new().write(true).create(true).truncate(false).open(&p);
        f.and_then(|f| f.write_all_at(text.as_bytes(), 0)).with_context(|| format!("writing {}", p.display()))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let p = self.dir.join(name);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", p.display())),
            _ => Ok(()),
        }
    }
}

/// (name, is a directory) of each entry of `dir`; none when it does not exist.
fn list(dir: &Path) -> Result<Vec<(String, bool)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    Ok(out)
}

/// The leases in `dir` by address, and the entries named by an address that
/// are not a lease link (a file restored or written by hand, say): those are
/// broken, and their address stays taken (`take` cannot make its link).
fn leases_in(dir: &Path) -> Result<Listing<Lease>> {
    let net = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut out = Listing::default();
    for (name, _) in list(dir)? {
        let Ok(ip) = name.parse::<Ipv4Addr>() else { continue };
        let p = dir.join(&name);
        match fs::read_link(&p) {
            Ok(owner) => out.good.push(Lease { ip, owner: owner.to_string_lossy().into_owned() }),
            Err(e) if e.kind() == ErrorKind::NotFound => {} // released meanwhile
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                let cause = "not a link to its holder (the address stays taken)";
                out.broken.push(Broken::new("lease", format!("{net}/{ip}"), &p, cause));
            }
            Err(e) => out.broken.push(Broken::new("lease", format!("{net}/{ip}"), &p, e.to_string())),
        }
    }
    out.good.sort_by_key(|l| l.ip);
    Ok(out)
}

/// Every address taken: leased, or named by a broken lease.
fn taken(l: &Listing<Lease>) -> HashSet<Ipv4Addr> {
    let broken = l.broken.iter().filter_map(|b| b.path.file_name()?.to_str()?.parse().ok());
    l.good.iter().map(|le| le.ip).chain(broken).collect()
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
        assert_eq!(ipam.allocate("n", s, gw, "c1", Some(ip)).unwrap(), ip);
        // One directory entry per lease, and nothing else but the next-fit hint.
        let mut entries: Vec<String> = fs::read_dir(d.path().join("ipam/n"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        entries.sort();
        assert_eq!(entries, [ip.to_string(), LAST.to_string()]);
        ipam.release("n", "c1", Some(ip), None).unwrap();
        assert!(ipam.leases("n").unwrap().good.is_empty());
        let ip = ipam.allocate("n", s, gw, "c1", Some(ip)).unwrap();

        let err = |want: &str| ipam.allocate("n", s, gw, "c2", Some(a(want))).unwrap_err().to_string();
        assert!(err("10.2.0.5").contains("outside"), "{}", err("10.2.0.5"));
        assert!(err("10.1.0.0").contains("network or broadcast"));
        assert!(err("10.1.0.255").contains("network or broadcast"));
        assert!(err("10.1.0.1").contains("gateway"));
        assert!(err(&ip.to_string()).contains("leased to c1"), "{}", err(&ip.to_string()));
        assert_eq!(ipam.allocate("n", s, gw, "c2", Some(a("10.1.0.77"))).unwrap(), a("10.1.0.77"));
        assert_eq!(ipam.leases("n").unwrap().good.len(), 2);
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
        ipam.release("n", "c0", None, None).unwrap();
        ipam.release("n", "c0", None, None).unwrap();
        ipam.release("none", "c0", None, None).unwrap();
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

        let leases = ipam.leases("n").unwrap().good;
        assert!(leases.windows(2).all(|w| w[0].ip < w[1].ip));
        assert_eq!(ipam.networks().unwrap(), ["n"]);
        ipam.drop_network("n").unwrap();
        ipam.drop_network("n").unwrap();
        assert!(ipam.networks().unwrap().is_empty() && ipam.leases("n").unwrap().good.is_empty());
        assert_eq!(fs::read_dir(d.path().join("ipam")).unwrap().count(), 0);
    }

    #[test]
    fn crowded_subnets_and_half_made_leases() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let (s, gw) = (n("10.4.0.0/24"), Some(a("10.4.0.1")));
        let got = drain(&ipam, "10.4.0.0/24", gw);
        assert_eq!(got.len(), 253);
        // One hole far from where next-fit resumes: found by listing, not by
        // 253 blind tries.
        ipam.release("n", "c100", None, None).unwrap();
        assert_eq!(ipam.allocate("n", s, gw, "late", None).unwrap(), got[100]);

        // A crash between the lease and its way back: the owner link is
        // missing, or points at an address somebody else holds now.
        let book = ipam.open("n").unwrap();
        book.release_address(&Lease { ip: got[5], owner: "c5".into() }).unwrap();
        symlink(got[5].to_string(), d.path().join("ipam/n/owner:ghost")).unwrap();
        symlink("c5", d.path().join("ipam/n").join(got[5].to_string())).unwrap();
        assert_eq!(
            book.allocate(s, gw, "ghost", None).unwrap_err().to_string(),
            "network n: no free address in 10.4.0.0/24 (253 leased)"
        );
        book.release_address(&Lease { ip: got[5], owner: "c5".into() }).unwrap();
        assert_eq!(book.allocate(s, gw, "ghost", None).unwrap(), got[5]);
        assert_eq!(book.leases().unwrap().good.iter().filter(|l| l.owner == "ghost").count(), 1);
        assert!(book.allocate(s, gw, "bad/owner", None).is_err());
    }

    /// A lease that is a plain file (say, emptied by a restore): reported,
    /// and its address is never handed out, whether asked for or not.
    #[test]
    fn a_broken_lease_keeps_its_address() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let (s, gw) = (n("10.5.0.0/29"), Some(a("10.5.0.1")));
        assert_eq!(ipam.allocate("n", s, gw, "c1", None).unwrap(), a("10.5.0.2"));
        let p = d.path().join("ipam/n/10.5.0.2");
        fs::remove_file(&p).unwrap();
        fs::write(&p, "").unwrap();
        let l = ipam.leases("n").unwrap();
        assert!(l.good.is_empty());
        assert_eq!((l.broken[0].name.as_str(), l.broken[0].path.as_path()), ("n/10.5.0.2", p.as_path()));
        let err = ipam.allocate("n", s, gw, "c2", Some(a("10.5.0.2"))).unwrap_err().to_string();
        assert!(err.contains(&format!("10.5.0.2 is taken: lease {} is unreadable", p.display())), "{err}");
        // Every other address goes, that one never (also past the blind tries).
        let got: Vec<_> = (0..4).map(|i| ipam.allocate("n", s, gw, &format!("d{i}"), None).unwrap()).collect();
        assert!(!got.contains(&a("10.5.0.2")), "{got:?}");
        let err = ipam.allocate("n", s, gw, "d9", None).unwrap_err().to_string();
        assert!(err.contains("no free address in 10.5.0.0/29 (5 leased)"), "{err}");
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
        let leased: HashSet<_> = Ipam::new(&root).leases("n").unwrap().good.into_iter().map(|l| l.ip).collect();
        assert_eq!(leased, got.iter().copied().collect());
    }
}
