//! Names that are not rcon's go to the node's upstream resolvers, over UDP,
//! and again over TCP when the answer came back truncated. The query is sent
//! as the client wrote it and the answer returned as the upstream wrote it.
//! The sockets are opened in the resolver's own namespace: the one the rcon
//! that started it ran in, where a loopback stub (127.0.0.53) is reachable.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// How long all upstreams together get before the client gets SERVFAIL.
pub const BUDGET: Duration = Duration::from_millis(1500);
/// No upstream gets less than this, even with many of them.
const MIN_TRY: Duration = Duration::from_millis(300);

/// The upstream's answer to `query`, or None when none answered within [`BUDGET`].
pub fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let deadline = Instant::now() + BUDGET;
    let each = (BUDGET / upstreams.len().max(1) as u32).max(MIN_TRY);
    for up in upstreams {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let t = each.min(left);
        match udp(query, *up, t) {
            Some(r) if truncated(&r) => {
                if let Some(r) = tcp(query, *up, t) {
                    return Some(r);
                }
            }
            Some(r) => return Some(r),
            None => {}
        }
    }
    None
}

/// The TC bit of a reply's header.
fn truncated(reply: &[u8]) -> bool {
    reply.get(2).is_some_and(|b| b & 0x02 != 0)
}

fn same_id(query: &[u8], reply: &[u8]) -> bool {
    reply.len() >= 12 && query.get(..2) == reply.get(..2)
}

fn udp(query: &[u8], up: SocketAddr, t: Duration) -> Option<Vec<u8>> {
    let any = if up.is_ipv4() { SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)) } else { "[::]:0".parse().ok()? };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(up).ok()?;
    s.send(query).ok()?;
    let deadline = Instant::now() + t;
    let mut buf = vec![0u8; 65535];
    loop {
        s.set_read_timeout(Some(deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?)).ok()?;
        let n = s.recv(&mut buf).ok()?;
        // A stray datagram (another id) is not the answer: wait on.
        if same_id(query, &buf[..n]) {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

fn tcp(query: &[u8], up: SocketAddr, t: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&up, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.set_write_timeout(Some(t)).ok()?;
    write_framed(&mut s, query).ok()?;
    let r = read_framed(&mut s).ok()?;
    same_id(query, &r).then_some(r)
}

/// One DNS message over TCP: its length in two bytes, then it (RFC 1035 4.2.2).
pub fn read_framed(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

pub fn write_framed(s: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_upstream_gives_up_within_the_budget() {
        // A bound socket that never answers, on loopback.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let q = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(forward(&q, &[silent.local_addr().unwrap()]), None);
    }

    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind(udp.local_addr().unwrap()).unwrap();
        let up = udp.local_addr().unwrap();
        let q = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            let mut r = buf[..n].to_vec();
            r[2] |= 0x82; // a response, truncated
            udp.send_to(&r, from).unwrap();
            let (mut c, _) = tcp.accept().unwrap();
            let mut r = read_framed(&mut c).unwrap();
            r[2] |= 0x80;
            r.push(0xaa); // what only the TCP answer has
            write_framed(&mut c, &r).unwrap();
        });
        let r = forward(&q, &[up]).expect("an answer");
        server.join().unwrap();
        assert_eq!((r.len(), r[12], truncated(&r)), (13, 0xaa, false));
    }
}
