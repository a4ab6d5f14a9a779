//! The node agent's logic, with no store and no kernel: leases in, the
//! data-plane steps out. The agent keeps the peers it wants (from the
//! store) and the peers it has programmed (its record), and after a list
//! or a batch of watched changes applies `diff(have, want)`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::etcd::Change;
use super::{flannel, Backend, Node};

/// Whose leases this node turns into peers, and how.
#[derive(Debug, Clone)]
pub struct Me {
    /// This node's lease key name (`10.244.1.0-24`).
    pub own: String,
    pub public_ip: Ipv4Addr,
    pub backend: Backend,
}

/// The peers the store asks for, by lease name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Want {
    pub peers: BTreeMap<String, Node>,
}

/// One thing to do to the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Add(Node),
    /// The same lease with other data (a node that came back with a new
    /// VTEP MAC or address): the old entries go, the new ones come.
    Change {
        old: Node,
        new: Node,
    },
    Remove(Node),
}

impl Step {
    /// The agent's log line for it.
    pub fn line(&self) -> String {
        fn about(n: &Node) -> String {
            match &n.vtep_mac {
                Some(m) => format!("via {} ({m})", n.underlay_ip),
                None => format!("via {}", n.underlay_ip),
            }
        }
        match self {
            Step::Add(n) => format!("added {} {}", n.name, about(n)),
            Step::Change { new, .. } => format!("changed {} {}", new.name, about(new)),
            Step::Remove(n) => format!("removed {}", n.name),
        }
    }
}

impl Want {
    /// The wanted peers of a full listing; the lines say which leases were skipped and why.
    pub fn from_list<'a>(me: &Me, leases: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> (Want, Vec<String>) {
        let mut w = Want::default();
        let mut skipped = Vec::new();
        for (name, value) in leases {
            skipped.extend(w.put(me, name, value));
        }
        (w, skipped)
    }

    /// Take in one lease put; a line when it is skipped. A lease that
    /// cannot be used drops what was wanted under its name.
    pub fn put(&mut self, me: &Me, name: &str, value: &[u8]) -> Option<String> {
        if name == me.own {
            return None;
        }
        let res = flannel::peer_of(name, value, me.backend).and_then(|n| {
            if n.underlay_ip == me.public_ip {
                anyhow::bail!("its PublicIP {} is this node's own (an old lease of this node)", n.underlay_ip);
            }
            Ok(n)
        });
        match res {
            Ok(n) => {
                self.peers.insert(name.to_string(), n);
                None
            }
            Err(e) => {
                self.peers.remove(name);
                Some(format!("skipped {name}: {e:#}"))
            }
        }
    }

    /// Take in a batch of watched changes (this node's own lease aside);
    /// the lines say what was skipped.
    pub fn apply(&mut self, me: &Me, changes: &[Change]) -> Vec<String> {
        let mut lines = Vec::new();
        for c in changes {
            match c {
                Change::Put(e) => lines.extend(self.put(me, &e.name, &e.value)),
                Change::Delete(name) => {
                    self.peers.remove(name);
                }
            }
        }
        lines
    }
}

/// The steps that take the programmed peers `have` to `want`: removals
/// first, so that a subnet handed from a dead node to a new one is free
/// in the kernel before it is programmed again.
pub fn diff(have: &BTreeMap<String, Node>, want: &BTreeMap<String, Node>) -> Vec<Step> {
    let mut steps: Vec<Step> =
        have.iter().filter(|(k, _)| !want.contains_key(*k)).map(|(_, n)| Step::Remove(n.clone())).collect();
    for (k, n) in want {
        match have.get(k) {
            None => steps.push(Step::Add(n.clone())),
            Some(old) if old != n => steps.push(Step::Change { old: old.clone(), new: n.clone() }),
            Some(_) => {}
        }
    }
    steps
}

/// Whether a change is to this node's own lease, and whether it is gone
/// (deleted, or written over by another node).
pub fn own_lease_lost(me: &Me, changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Delete(name) => *name == me.own,
        Change::Put(e) => {
            e.name == me.own
                && serde_json::from_slice::<flannel::LeaseAttrs>(&e.value).map_or(true, |a| a.public_ip != me.public_ip)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::etcd::Entry;
    use super::*;

    fn me() -> Me {
        Me { own: "10.244.1.0-24".into(), public_ip: "192.168.77.1".parse().unwrap(), backend: Backend::Vxlan }
    }

    fn lease(ip: &str, mac: &str) -> Vec<u8> {
        format!(r#"{{"PublicIP":"{ip}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#)
            .into_bytes()
    }

    fn put(name: &str, value: Vec<u8>) -> Change {
        Change::Put(Entry { name: name.into(), value, lease: 7, mod_revision: 9 })
    }

    #[test]
    fn a_listing_wants_every_usable_peer_but_itself() {
        let a = lease("192.168.77.2", "aa:bb:cc:00:00:02");
        let own = lease("192.168.77.1", "0e:52:c0:a8:4d:01");
        let hostgw = br#"{"PublicIP":"192.168.77.4","BackendType":"host-gw"}"#.to_vec();
        let stale = lease("192.168.77.1", "0e:52:c0:a8:4d:01");
        let list: Vec<(&str, &[u8])> = vec![
            ("10.244.1.0-24", &own),
            ("10.244.2.0-24", &a),
            ("10.244.3.0-24", b"{not json"),
            ("10.244.4.0-24", &hostgw),
            ("10.244.5.0-24", &stale),
        ];
        let (w, skipped) = Want::from_list(&me(), list);
        assert_eq!(w.peers.keys().collect::<Vec<_>>(), ["10.244.2.0-24"]);
        assert_eq!(w.peers["10.244.2.0-24"].vtep_mac.map(|m| m.to_string()).as_deref(), Some("aa:bb:cc:00:00:02"));
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].starts_with("skipped 10.244.3.0-24: not a lease"), "{skipped:?}");
        assert!(skipped[1].contains("its backend is \"host-gw\""), "{skipped:?}");
        assert!(skipped[2].contains("this node's own"), "{skipped:?}");
    }

    #[test]
    fn watched_changes_turn_into_steps() {
        let m = me();
        let mut w = Want::default();
        let have = BTreeMap::new();
        w.apply(&m, &[put("10.244.2.0-24", lease("192.168.77.2", "aa:00:00:00:00:02"))]);
        let steps = diff(&have, &w.peers);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].line(), "added 10.244.2.0-24 via 192.168.77.2 (aa:00:00:00:00:02)");
        let have = w.peers.clone();
        // Nothing changed: nothing to do (an agent restarted on the same store).
        assert!(diff(&have, &w.peers).is_empty());
        // A node back with a new MAC.
        w.apply(&m, &[put("10.244.2.0-24", lease("192.168.77.2", "aa:00:00:00:00:22"))]);
        let steps = diff(&have, &w.peers);
        assert!(matches!(&steps[..], [Step::Change { old, new }] if old.vtep_mac != new.vtep_mac));
        // A lease gone, another one bad: both peers go.
        w.apply(&m, &[Change::Delete("10.244.2.0-24".into())]);
        assert_eq!(diff(&have, &w.peers), [Step::Remove(have["10.244.2.0-24"].clone())]);
        let mut w2 = Want { peers: have.clone() };
        let lines = w2.apply(&m, &[put("10.244.2.0-24", b"garbage".to_vec())]);
        assert_eq!(lines.len(), 1);
        assert!(matches!(&diff(&have, &w2.peers)[..], [Step::Remove(_)]));
    }

    #[test]
    fn removals_come_first() {
        let n = |name: &str, ip: &str| Node {
            name: name.into(),
            underlay_ip: ip.parse().unwrap(),
            subnet: flannel::parse_key_name(name).unwrap(),
            vtep_mac: None,
        };
        let have: BTreeMap<String, Node> = [("10.244.2.0-24".to_string(), n("10.244.2.0-24", "192.168.77.2"))].into();
        let want: BTreeMap<String, Node> = [("10.244.3.0-24".to_string(), n("10.244.3.0-24", "192.168.77.3"))].into();
        let steps = diff(&have, &want);
        assert!(matches!(&steps[..], [Step::Remove(_), Step::Add(_)]), "{steps:?}");
    }

    #[test]
    fn own_lease_lost_when_deleted_or_taken() {
        let m = me();
        assert!(own_lease_lost(&m, &[Change::Delete("10.244.1.0-24".into())]));
        assert!(!own_lease_lost(&m, &[Change::Delete("10.244.2.0-24".into())]));
        assert!(!own_lease_lost(&m, &[put("10.244.1.0-24", lease("192.168.77.1", "0e:00:00:00:00:01"))]));
        assert!(own_lease_lost(&m, &[put("10.244.1.0-24", lease("192.168.77.9", "0e:00:00:00:00:09"))]));
    }
}
