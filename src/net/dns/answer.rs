//! One query in, one reply out (or "forward it"): the resolver's hot path,
//! a parse with hickory-proto and a look-up in the network's table.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::table::NetTable;

/// How long clients may keep an answer: short, so a removed name goes soon from any cache.
const TTL: u32 = 5;

pub enum Reply {
    /// Send these bytes back.
    Local(Vec<u8>),
    /// Not ours: ask the upstreams.
    Forward,
    /// Not even a header: nothing to answer.
    Drop,
}

/// The reply to `query` from `table`.
pub fn answer(table: &NetTable, query: &[u8]) -> Reply {
    let Ok(msg) = Message::from_vec(query) else {
        return match query {
            [a, b, ..] => error(u16::from_be_bytes([*a, *b]), ResponseCode::FormErr),
            _ => Reply::Drop,
        };
    };
    if msg.message_type() != MessageType::Query {
        return Reply::Drop;
    }
    if msg.op_code() != OpCode::Query {
        return error(msg.id(), ResponseCode::NotImp);
    }
    let [q] = msg.queries() else { return error(msg.id(), ResponseCode::FormErr) };
    let name = q.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    let mut records = Vec::new();
    let code = if let Some(ip) = arpa_v4(name) {
        match table.reverse(ip) {
            Some(n) if q.query_type() == RecordType::PTR => {
                let target = Name::from_ascii(format!("{n}.")).unwrap_or_default();
                records.push(Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(target))));
                ResponseCode::NoError
            }
            Some(_) => ResponseCode::NoError,
            None if table.subnet.is_some_and(|s| s.contains(&ip)) => ResponseCode::NXDomain,
            None => return Reply::Forward,
        }
    } else if let Some(ips) = table.lookup(name) {
        if matches!(q.query_type(), RecordType::A | RecordType::ANY) {
            records.extend(ips.iter().map(|ip| Record::from_rdata(q.name().clone(), TTL, RData::A(A(*ip)))));
        }
        ResponseCode::NoError
    } else if !name.contains('.') {
        // A single label is a container's name or nothing: not sent out of the node.
        ResponseCode::NXDomain
    } else {
        return Reply::Forward;
    };
    let mut out = response(&msg, code);
    out.add_query(q.clone());
    out.add_answers(records);
    out.to_vec().map_or(Reply::Drop, Reply::Local)
}

/// `d.c.b.a.in-addr.arpa` as a.b.c.d.
fn arpa_v4(name: &str) -> Option<Ipv4Addr> {
    let rev = name.strip_suffix(".in-addr.arpa")?;
    let mut o = [0u8; 4];
    let mut parts = rev.split('.');
    for slot in o.iter_mut().rev() {
        *slot = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(o))
}

fn response(q: &Message, code: ResponseCode) -> Message {
    let mut m = Message::error_msg(q.id(), OpCode::Query, code);
    m.set_recursion_desired(q.recursion_desired()).set_recursion_available(true).set_authoritative(true);
    m
}

fn error(id: u16, code: ResponseCode) -> Reply {
    Message::error_msg(id, OpCode::Query, code).to_vec().map_or(Reply::Drop, Reply::Local)
}

/// SERVFAIL for `query` (no upstream answered), when it has an id.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    match error(u16::from_be_bytes([*query.first()?, *query.get(1)?]), ResponseCode::ServFail) {
        Reply::Local(b) => Some(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use std::str::FromStr;

    fn ask(t: &NetTable, name: &str, ty: RecordType) -> Option<Message> {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true).add_query(Query::query(Name::from_str(name).unwrap(), ty));
        match answer(t, &m.to_vec().unwrap()) {
            Reply::Local(b) => Some(Message::from_vec(&b).unwrap()),
            _ => None,
        }
    }

    fn table() -> NetTable {
        let nets = [{
            let mut r = crate::net::network::Request::new("n");
            r.subnet = Some("10.9.0.0/24".parse().unwrap());
            crate::net::network::resolve(&r, &[], 1500).unwrap()
        }];
        let mut ep: crate::net::endpoint::Endpoint = serde_json::from_value(serde_json::json!({
            "network": "n", "key": "k", "netns": "/x", "netns_id": "1:2", "owner": null,
            "ifname": "eth0", "host_ifname": "rv0", "ip": "10.9.0.5", "prefix": 24, "mac": "02:00:00:00:00:01",
            "gateway": null
        }))
        .unwrap();
        ep.names = vec!["web".into()];
        let t = super::super::table::build(&nets, &[ep], &[]);
        std::sync::Arc::try_unwrap(t.into_values().next().unwrap()).unwrap()
    }

    #[test]
    fn answers_a_ptr_and_nxdomain_and_forwards_the_rest() {
        let t = table();
        let a = ask(&t, "WEB.", RecordType::A).unwrap();
        assert_eq!((a.id(), a.response_code(), a.answers().len()), (7, ResponseCode::NoError, 1));
        assert_eq!(a.answers()[0].data(), &RData::A(A("10.9.0.5".parse().unwrap())));
        let p = ask(&t, "5.0.9.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(p.answers()[0].data(), &RData::PTR(PTR(Name::from_str("web.").unwrap())));
        assert_eq!(ask(&t, "6.0.9.10.in-addr.arpa.", RecordType::PTR).unwrap().response_code(), ResponseCode::NXDomain);
        assert_eq!(ask(&t, "gone.", RecordType::A).unwrap().response_code(), ResponseCode::NXDomain);
        let aaaa = ask(&t, "web.", RecordType::AAAA).unwrap();
        assert_eq!((aaaa.response_code(), aaaa.answers().len()), (ResponseCode::NoError, 0));
        assert!(ask(&t, "example.com.", RecordType::A).is_none(), "forwarded");
        assert!(ask(&t, "1.1.168.192.in-addr.arpa.", RecordType::PTR).is_none(), "forwarded");
    }

    #[test]
    fn garbage_gets_formerr_or_nothing() {
        assert!(matches!(answer(&table(), &[0]), Reply::Drop));
        let Reply::Local(b) = answer(&table(), &[1, 2, 3]) else { panic!("a reply") };
        assert_eq!(Message::from_vec(&b).unwrap().response_code(), ResponseCode::FormErr);
    }
}
