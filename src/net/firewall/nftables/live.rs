//! Reading `table ip rcon` back: `nft -j list table` parsed into what rcon's rendering and checks need
//! (chains, sets, each rule's comment, and the elements with their owners).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::{HAIRPIN, PUB_ADDR, PUB_ANY, SUBNETS};

/// What the kernel holds of `table ip rcon`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Live {
    pub exists: bool,
    pub chains: BTreeSet<String>,
    /// Names of the sets and maps.
    pub sets: BTreeSet<String>,
    /// Each chain's rules, as their comments.
    pub rules: BTreeMap<String, Vec<Option<String>>>,
    pub elems: Vec<Elem>,
    /// Elements of the published-port maps and the hairpin set.
    pub ports: Vec<PortElem>,
    /// Elements of the service maps and the service hairpin set.
    pub svc: Vec<PortElem>,
}

/// One published-port element: its key as nft takes it back (`tcp . 8080`), and its owner (an endpoint key).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PortElem {
    pub set: String,
    pub key: String,
    pub owner: Option<String>,
}

/// One element of one of rcon's sets or maps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Elem {
    pub set: String,
    pub key: Ipv4Net,
    /// The owning network (the element's comment).
    pub owner: Option<String>,
}

impl Live {
    /// Parse `nft -j list table ip rcon`.
    pub(crate) fn parse(json: &str) -> Result<Live> {
        let v: Value = serde_json::from_str(json).context("parsing nft's JSON listing")?;
        let mut live = Live::default();
        for obj in v["nftables"].as_array().into_iter().flatten() {
            if obj.get("table").is_some() {
                live.exists = true;
            } else if let Some(name) = obj["chain"]["name"].as_str() {
                live.chains.insert(name.to_string());
            } else if let Some(chain) = obj["rule"]["chain"].as_str() {
                let comment = obj["rule"]["comment"].as_str().map(String::from);
                live.rules.entry(chain.to_string()).or_default().push(comment);
            } else if let Some(set) = obj.get("set").or_else(|| obj.get("map")) {
                let name = set["name"].as_str().unwrap_or_default();
                live.sets.insert(name.to_string());
                for item in set["elem"].as_array().into_iter().flatten() {
                    // A map's element is [key, verdict]; a set's is the key itself.
                    let key = item.as_array().and_then(|kv| kv.first()).unwrap_or(item);
                    // Every service set's name starts with `svc` (`svc_all`, `svc_self`, `svc_dst_I`, `svc-random-2`).
                    if [PUB_ANY, PUB_ADDR, HAIRPIN].contains(&name) || name.starts_with("svc") {
                        if let Some((key, owner)) = parse_concat(key) {
                            let list = if name.starts_with("svc") { &mut live.svc } else { &mut live.ports };
                            list.push(PortElem { set: name.to_string(), key, owner });
                        }
                    } else if let Some((key, owner)) = parse_key(key) {
                        live.elems.push(Elem { set: name.to_string(), key, owner });
                    }
                }
            }
        }
        Ok(live)
    }

    /// Network names, from the element comments.
    pub(crate) fn owners(&self) -> BTreeSet<&str> {
        self.elems.iter().filter_map(|e| e.owner.as_deref()).collect()
    }

    /// Each network's subnet, from the `subnets` set.
    pub(crate) fn subnets(&self) -> BTreeMap<&str, Ipv4Net> {
        self.elems.iter().filter(|e| e.set == SUBNETS).filter_map(|e| Some((e.owner.as_deref()?, e.key))).collect()
    }
}

/// A concatenated key as nft prints it ({"concat": ["tcp", 8080]}, maybe inside {"elem": {"val": …}}), back
/// in nft's syntax (`tcp . 8080`).
fn parse_concat(v: &Value) -> Option<(String, Option<String>)> {
    let (val, owner) = match v.get("elem") {
        Some(e) => (&e["val"], e["comment"].as_str().map(String::from)),
        None => (v, None),
    };
    let parts: Vec<String> = val["concat"]
        .as_array()?
        .iter()
        .map(|p| p.as_str().map(String::from).or_else(|| p.as_u64().map(|n| n.to_string())))
        .collect::<Option<_>>()?;
    Some((parts.join(" . "), owner))
}

/// A key as nft prints it: "10.0.0.1", {"prefix": {...}}, or {"elem": {"val": ..., "comment": ...}}.
fn parse_key(v: &Value) -> Option<(Ipv4Net, Option<String>)> {
    if let Some(s) = v.as_str() {
        return Some((Ipv4Net::new(s.parse().ok()?, 32).ok()?, None));
    }
    if let Some(p) = v.get("prefix") {
        let addr = p["addr"].as_str()?.parse().ok()?;
        return Some((Ipv4Net::new(addr, p["len"].as_u64()? as u8).ok()?, None));
    }
    let e = v.get("elem")?;
    let (key, _) = parse_key(&e["val"])?;
    Some((key, e["comment"].as_str().map(String::from)))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::*;

    #[test]
    fn parse_listing() {
        let l = live();
        assert!(l.exists);
        assert_eq!(l.owners().into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(l.subnets()["b"], "10.2.0.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.elems.iter().filter(|e| e.owner.as_deref() == Some("a")).count(), 4);
        assert!(l.chains.contains("nat-a") && l.chains.contains("forward"));
        // A bare /32 key, and a set element without a comment.
        let bare = r#"{"nftables": [{"set": {"name": "subnets", "elem": ["10.9.0.1", {"prefix": {"addr": "10.8.0.0", "len": 16}}]}}]}"#;
        let l = Live::parse(bare).unwrap();
        assert!(!l.exists);
        assert_eq!(l.elems[0].key, "10.9.0.1/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.elems[1].owner, None);
    }
}
