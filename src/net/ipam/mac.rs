//! MAC reservations, kept in the network's lease book beside the addresses:
//! `mac:02:42:0a:00:00:05 -> OWNER`. Two interfaces with one MAC on one
//! layer-2 network steal each other's frames. A MAC given with `--mac` is
//! reserved: making the link is the reservation, and the kernel refuses a
//! second one, so of two attaches racing for one MAC exactly one wins.
//! Derived MACs are not: one made from the endpoint's key (or its address,
//! on cluster networks) is unique without it, so attach only checks that no
//! reservation holds it, and a `--mac` is checked against the network's
//! endpoints (under the book's lock, which every attach holds). A MAC on
//! another network is another book, and fine.

use super::*;

const MAC: &str = "mac:";

/// One reserved MAC and the endpoint key that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct MacLease {
    pub mac: String,
    pub owner: String,
}

impl Book {
    /// Reserve `mac` for `owner` (idempotent per owner). Returns the holder
    /// when somebody else has it already.
    pub fn take_mac(&self, mac: Mac, owner: &str) -> Result<Option<String>> {
        let name = format!("{MAC}{mac}");
        let p = self.dir.join(&name);
        match symlink(owner, &p) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Releases take the book's lock, which we hold: the holder is still there.
                let holder = self.read_link(&name)?.unwrap_or_default();
                Ok((holder != owner).then_some(holder))
            }
            Err(e) => Err(e).with_context(|| format!("making {}", p.display())),
        }
    }

    /// Who other than `owner` holds a reservation of `mac` (one lookup, nothing made).
    pub fn mac_holder(&self, mac: Mac, owner: &str) -> Result<Option<String>> {
        Ok(self.read_link(&format!("{MAC}{mac}"))?.filter(|h| h != owner))
    }

    /// Give `mac` back, if `owner` holds it. Idempotent. `mac` is as the
    /// book names it (`MacLease::mac`), so gc can release any entry it lists.
    pub fn release_mac(&self, mac: &str, owner: &str) -> Result<()> {
        let name = format!("{MAC}{mac}");
        if self.read_link(&name)?.as_deref() == Some(owner) {
            self.remove(&name)?;
        }
        Ok(())
    }

    /// Every reserved MAC (for gc).
    pub fn macs(&self) -> Result<Vec<MacLease>> {
        let mut out = Vec::new();
        for (name, _) in list(&self.dir)? {
            let Some(mac) = name.strip_prefix(MAC) else { continue };
            if let Some(owner) = self.read_link(&name)? {
                out.push(MacLease { mac: mac.to_string(), owner });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_mac_and_network() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path());
        let (a, b) = (ipam.open("a").unwrap(), ipam.open("b").unwrap());
        let text = "02:42:0a:00:00:05";
        let m: crate::net::macaddr::Mac = text.parse().unwrap();
        assert_eq!(a.take_mac(m, "k1").unwrap(), None);
        assert_eq!(a.take_mac(m, "k1").unwrap(), None, "idempotent for its holder");
        assert_eq!(a.take_mac(m, "k2").unwrap().as_deref(), Some("k1"));
        assert_eq!(a.mac_holder(m, "k2").unwrap().as_deref(), Some("k1"));
        assert_eq!(a.mac_holder(m, "k1").unwrap(), None, "its holder may use it");
        assert_eq!(b.take_mac(m, "k2").unwrap(), None, "another network is another book");
        // Neither the MACs nor anything else show up as address leases.
        assert!(a.leases().unwrap().good.is_empty());
        assert_eq!(a.macs().unwrap(), [MacLease { mac: text.into(), owner: "k1".into() }]);
        a.release_mac(text, "k2").unwrap(); // not k2's: nothing happens
        assert_eq!(a.take_mac(m, "k2").unwrap().as_deref(), Some("k1"));
        a.release_mac(text, "k1").unwrap();
        a.release_mac(text, "k1").unwrap();
        assert_eq!(a.take_mac(m, "k2").unwrap(), None);
    }

    #[test]
    fn racing_takers_of_one_mac_one_wins() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        let wins: usize = (0..8)
            .map(|t| {
                let root = root.clone();
                // Each thread opens the book itself: flock is per open file description.
                std::thread::spawn(move || {
                    let book = Ipam::new(&root).open("n").unwrap();
                    book.take_mac("02:00:00:00:00:01".parse().unwrap(), &format!("k{t}")).unwrap().is_none()
                })
            })
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
    }
}
