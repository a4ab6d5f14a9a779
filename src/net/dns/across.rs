//! Names across nodes, the pure part (docs/DNS.md "Across nodes"): the
//! record a node publishes in etcd (`<prefix>/rcon/dns/<lease name>` =
//! `{"names":{"web":["10.244.1.2"]}}`), what the other nodes published as
//! the watch delivers it, and the merge of those names into the table of the
//! local cluster network. No store, no threads: `sync` runs those.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::resolv::is_label;
use super::table::NetTable;
use crate::net::etcd::Change;

/// One node's names on its cluster network, each with its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub names: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl Record {
    /// The record of these (name, address) pairs: names lowercased, an address once per name.
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, Ipv4Addr)>) -> Record {
        let mut names: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for (n, ip) in pairs {
            let ips = names.entry(n.to_ascii_lowercase()).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        Record { names }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("names and addresses serialize")
    }

    /// A value under the names prefix, as any node or tool may have put it. A value that is not a
    /// record, or that names something other than a DNS label, is refused whole (the reason
    /// goes to the resolver's log): answering half of what a broken writer meant would hide it.
    pub fn parse(value: &[u8]) -> Result<Record, String> {
        let r: Record = serde_json::from_slice(value).map_err(|e| format!("not a names record: {e}"))?;
        if let Some(bad) = r.names.keys().find(|n| !is_label(n)) {
            return Err(format!("{bad:?} is not a DNS label"));
        }
        Ok(Record::of(r.names.iter().flat_map(|(n, ips)| ips.iter().map(move |ip| (n.as_str(), *ip)))))
    }
}

/// The other nodes' records, by key name (`10.244.2.0-24`); this node's own key is left out (its
/// names come from its own records, at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    nodes: BTreeMap<String, Record>,
}

impl Remote {
    /// What a listing of the prefix holds, and a line for each value skipped.
    pub fn from_list<'a>(own: &str, entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> (Remote, Vec<String>) {
        let mut r = Remote::default();
        let lines = entries.into_iter().filter_map(|(k, v)| r.put(own, k, v)).collect();
        (r, lines)
    }

    /// Apply a batch of watched changes; a line for each value skipped. True when the names changed.
    pub fn apply(&mut self, own: &str, changes: &[Change]) -> (bool, Vec<String>) {
        let before = self.nodes.clone();
        let lines = changes
            .iter()
            .filter_map(|c| match c {
                Change::Put(e) => self.put(own, &e.name, &e.value),
                Change::Delete(k) => {
                    self.nodes.remove(k);
                    None
                }
            })
            .collect();
        (self.nodes != before, lines)
    }

    /// Take `key`'s value; a value that cannot be used drops what the key held before.
    fn put(&mut self, own: &str, key: &str, value: &[u8]) -> Option<String> {
        if key == own || key.is_empty() || key.contains('/') {
            return None;
        }
        match Record::parse(value) {
            Ok(r) => {
                self.nodes.insert(key.to_string(), r);
                None
            }
            Err(why) => {
                self.nodes.remove(key);
                Some(format!("skipped {key}: {why}"))
            }
        }
    }

    /// Add every remote name to `t` (after the local ones, so a local address keeps its own PTR):
    /// a name on several nodes answers with all their addresses.
    pub fn merge_into(&self, t: &mut NetTable) {
        for r in self.nodes.values() {
            for (n, ips) in &r.names {
                ips.iter().for_each(|ip| t.add(n, *ip));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::etcd::Entry;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn put(key: &str, value: &str) -> Change {
        Change::Put(Entry { name: key.into(), value: value.as_bytes().to_vec(), lease: 0, mod_revision: 1 })
    }

    #[test]
    fn the_record_is_one_json_object_of_names() {
        let r = Record::of([("Web", ip("10.244.1.2")), ("web", ip("10.244.1.2")), ("www", ip("10.244.1.2"))]);
        assert_eq!(String::from_utf8(r.to_json()).unwrap(), r#"{"names":{"web":["10.244.1.2"],"www":["10.244.1.2"]}}"#);
        assert_eq!(Record::parse(&r.to_json()), Ok(r));
        // Another tool's spelling: upper case is the same name.
        assert_eq!(Record::parse(br#"{"names":{"DB":["10.244.3.4"]}}"#).unwrap().names["db"], [ip("10.244.3.4")]);
        for bad in [&b"nonsense"[..], br#"{"names":{"a_b":["10.244.3.4"]}}"#, br#"{"names":{"a":["x"]}}"#, b"{}"] {
            assert!(Record::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn remote_names_merge_into_the_cluster_table_only_from_other_nodes() {
        let (mut remote, lines) = Remote::from_list(
            "10.244.1.0-24",
            [
                ("10.244.1.0-24", &br#"{"names":{"mine":["10.244.1.9"]}}"#[..]),
                ("10.244.2.0-24", br#"{"names":{"web":["10.244.2.2"],"db":["10.244.2.3"]}}"#),
                ("10.244.3.0-24", b"garbage"),
            ],
        );
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("skipped 10.244.3.0-24: not a names record"), "{lines:?}");
        let mut t = NetTable::default();
        t.add("web", ip("10.244.1.2"));
        remote.merge_into(&mut t);
        assert_eq!(t.lookup("web"), Some(&[ip("10.244.1.2"), ip("10.244.2.2")][..]), "a name on two nodes");
        assert_eq!(t.lookup("db"), Some(&[ip("10.244.2.3")][..]));
        assert_eq!(t.lookup("mine"), None, "this node's own key is not read back");
        assert_eq!(t.reverse(ip("10.244.2.3")), Some("db"));

        // A put replaces the node's names, a delete drops them, and a bad value drops what was there.
        let (changed, lines) = remote.apply(
            "10.244.1.0-24",
            &[put("10.244.2.0-24", r#"{"names":{"web":["10.244.2.2"]}}"#), put("10.244.3.0-24", r#"{"names":{}}"#)],
        );
        assert!(changed && lines.is_empty());
        let mut t = NetTable::default();
        remote.merge_into(&mut t);
        assert_eq!((t.lookup("web").is_some(), t.lookup("db")), (true, None));
        assert_eq!(remote.apply("10.244.1.0-24", &[put("10.244.3.0-24", r#"{"names":{}}"#)]), (false, vec![]));
        let (changed, lines) = remote.apply("10.244.1.0-24", &[put("10.244.2.0-24", "{")]);
        assert!(changed && lines.len() == 1, "{lines:?}");
        remote.apply("10.244.1.0-24", &[Change::Delete("10.244.3.0-24".into())]);
        assert!(remote.is_empty());
    }
}
