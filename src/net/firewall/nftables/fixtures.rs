//! What the tests of the nftables backend share: a listing of a live table, and networks.

use super::Live;
use crate::net::firewall::NetRules;

pub(super) fn net(name: &str, subnet: &str, internal: bool, masquerade: bool) -> NetRules {
    NetRules::plain(name, subnet.parse().unwrap(), internal, masquerade)
}

/// The listing nft 1.0.6 prints for a table holding network "a" (10.1.0.0/24, masquerading) and "b"
/// (10.2.0.0/24, internal), trimmed to what the parser reads plus some rules it must skip.
pub(super) const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
  {"table": {"family": "ip", "name": "rcon", "handle": 7}},
  {"set": {"family": "ip", "name": "subnets", "table": "rcon", "type": "ipv4_addr", "flags": ["interval"],
    "elem": [{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
             {"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "comment": "b"}}]}},
  {"map": {"family": "ip", "name": "fwd_src", "table": "rcon", "type": "ipv4_addr", "map": "verdict",
    "elem": [[{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
              {"jump": {"target": "out-a"}}],
             [{"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "comment": "b"}},
              {"jump": {"target": "out-b"}}]]}},
  {"map": {"family": "ip", "name": "fwd_dst", "table": "rcon", "type": "ipv4_addr", "map": "verdict",
    "elem": [[{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
              {"jump": {"target": "replies"}}],
             [{"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "comment": "b"}},
              {"drop": null}]]}},
  {"map": {"family": "ip", "name": "nat_src", "table": "rcon", "type": "ipv4_addr", "map": "verdict",
    "elem": [[{"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 24}}, "comment": "a"}},
              {"jump": {"target": "nat-a"}}]]}},
  {"chain": {"family": "ip", "table": "rcon", "name": "forward", "handle": 1, "type": "filter",
             "hook": "forward", "prio": 0, "policy": "accept"}},
  {"chain": {"family": "ip", "table": "rcon", "name": "postrouting", "handle": 2}},
  {"chain": {"family": "ip", "table": "rcon", "name": "replies", "handle": 3}},
  {"chain": {"family": "ip", "table": "rcon", "name": "out-a", "handle": 4}},
  {"chain": {"family": "ip", "table": "rcon", "name": "nat-a", "handle": 5}},
  {"chain": {"family": "ip", "table": "rcon", "name": "out-b", "handle": 6}},
  {"chain": {"family": "ip", "table": "rcon", "name": "pub_pre", "handle": 14}},
  {"chain": {"family": "ip", "table": "rcon", "name": "pub_out", "handle": 15}},
  {"chain": {"family": "ip", "table": "rcon", "name": "pub_dnat", "handle": 16}},
  {"chain": {"family": "ip", "table": "rcon", "name": "svc_pick", "handle": 17}},
  {"map": {"family": "ip", "name": "pub_any", "table": "rcon", "type": ["inet_proto", "inet_service"],
    "map": "concat", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "k1"}},
                               {"concat": ["10.1.0.2", 80]}]]}},
  {"set": {"family": "ip", "name": "hairpin", "table": "rcon", "type": ["ipv4_addr", "ipv4_addr"],
    "elem": [{"elem": {"val": {"concat": ["10.1.0.2", "10.1.0.2"]}, "comment": "k1"}}]}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "forward", "handle": 8, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "forward", "handle": 9, "comment": "rcon base 5",
            "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "saddr"}}, "data": "@fwd_src"}}]}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "forward", "handle": 10, "comment": "rcon base 5",
            "expr": [{"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@fwd_dst"}}]}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 11, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 17, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 18, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "postrouting", "handle": 23, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "pub_pre", "handle": 24, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "pub_out", "handle": 25, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "replies", "handle": 12, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "pub_pre", "handle": 19, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "pub_out", "handle": 20, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "pub_dnat", "handle": 21, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "pub_dnat", "handle": 22, "comment": "rcon base 5",
            "expr": []}},
  {"rule": {"family": "ip", "table": "rcon", "chain": "out-a", "handle": 13, "expr": []}}
]}"#;

pub(super) fn live() -> Live {
    Live::parse(LISTING).unwrap()
}
