//! IPIP through tc eBPF (`--ipip-mode ebpf`, and what `auto` picks on this
//! kernel without ipip.ko) with real packets, in the worlds of cluster.rs:
//! two nodes carry every exchange (ping, DF pings up to the MTU of 1480, a
//! 1 MB stream byte for byte) with RFC 2003 on the wire; `reset` leaves no
//! tc filter, program or map; a packet too big for the tunnel gets
//! "fragmentation needed"; IPIP from an address that is no peer is dropped
//! while a peer's passes; `cluster repair` re-attaches what was removed;
//! bulk TCP reaches the pod in whole GSO packets through the bridge's
//! shortcut, which attach and detach keep in step.

use crate::cluster::{self, carries_everything, reset_leaves_nothing, two_nodes_and_a_sleeper, IPIP_WIRE};
use crate::common::{sh, wait_until};

/// The program ids of node `i`'s filters: the underlay's ingress and rcon-ebpf's egress.
fn prog_ids(c: &cluster::Cluster, i: usize) -> Vec<String> {
    let out = c.node_sh(i, "tc filter show dev u0 ingress; tc filter show dev rcon-ebpf egress");
    let ids: Vec<String> = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "id")
        .map(|w| w[1].to_string())
        .collect();
    assert_eq!(ids.len(), 2, "node {i}: want two rcon filters: {out}");
    ids
}

/// The ids of the maps program `id` uses (bpftool's "map_ids 1,2,3").
fn map_ids(id: &str) -> Vec<String> {
    let out = sh(&format!("bpftool prog show id {id}"));
    let list = out.split_whitespace().skip_while(|w| *w != "map_ids").nth(1).unwrap_or_default();
    list.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `auto` on this kernel picks eBPF, which carries everything the kernel's
/// ipip would, with the same wire; `reset` frees every program and map.
#[test]
fn ipip_ebpf_between_two_nodes() {
    let c = carries_everything("eb", "ipip", &[], 1480, "ip proto 4", &IPIP_WIRE);
    let inspect: serde_json::Value = serde_json::from_str(&c.nodes[0].ok(&["cluster", "inspect"])).unwrap();
    assert_eq!(inspect["ipip_plane"], "ebpf", "auto without ipip.ko: {inspect}");
    let progs: Vec<String> = (0..2).flat_map(|i| prog_ids(&c, i)).collect();
    let maps: Vec<String> = progs.iter().flat_map(|p| map_ids(p)).collect();
    assert!(maps.len() >= 6, "each node's programs use three maps: {maps:?}");
    reset_leaves_nothing(&c, "ipip");
    for i in 0..2 {
        let filters = c.node_sh(i, "tc filter show dev u0 ingress");
        assert_eq!(filters.trim(), "", "node {i}: reset left a filter on the underlay");
    }
    for p in &progs {
        let out = sh(&format!("bpftool prog show id {p} 2>&1 || true"));
        assert!(!out.contains("rcon_ipip"), "reset left program {p}: {out}");
    }
    for m in &maps {
        let out = sh(&format!("bpftool map show id {m} 2>&1 || true"));
        assert!(!out.contains("rcon_ipip"), "reset left map {m}: {out}");
    }
}

/// Path MTU, strangers, and repair, on two nodes in eBPF mode:
/// - a host behind node 1 (MTU 1500) sends a 1500-byte DF ping to node
///   0's pod: node 1 answers "fragmentation needed" with the tunnel's 1480;
/// - an IPIP packet to node 0 from an underlay address that is no peer is
///   dropped, while the same packet from node 1 reaches node 0's bridge;
/// - `cluster repair` re-attaches a removed underlay filter and makes a
///   deleted rcon-ebpf again, with its peers, and pods talk again.
#[test]
fn ipip_ebpf_path_mtu_strangers_and_repair() {
    let (mut c, ip) = two_nodes_and_a_sleeper("ep", "ipip", &["--ipip-mode", "ebpf"]);
    assert!(c.reaches(1, &ip), "no ping between the nodes' pods");
    let (n0, n1) = (c.nodes[0].node.clone().unwrap(), c.nodes[1].node.clone().unwrap());

    // A host behind node 1, on a link with MTU 1500.
    let host = format!("{}h", c.nodes[0].name);
    c.nodes[0].add_system_netns(&host);
    sh(&format!(
        "ip link add x0 netns {host} type veth peer name xo netns {n1} && \
         ip -n {n1} addr add 10.99.0.1/24 dev xo && ip -n {n1} link set xo up && \
         ip -n {host} addr add 10.99.0.2/24 dev x0 && ip -n {host} link set x0 up && \
         ip -n {host} route add 10.244.0.0/16 via 10.99.0.1"
    ));
    let icmp = c.capture_on(&host, "x0", "icmp");
    // busybox ping sets DF; 1472 bytes of data make a 1500-byte packet.
    let _ = sh(&format!("nsenter --net=/var/run/netns/{host} busybox ping -c1 -W2 -s 1472 {ip} || true"));
    wait_until("node 1's fragmentation needed with the tunnel's MTU", || {
        std::fs::read_to_string(&icmp).unwrap_or_default().contains("need to frag (mtu 1480)")
    });

    // A stranger on the underlay, and node 1, each send one IPIP packet to node 0.
    let stranger = format!("{}s", c.nodes[0].name);
    c.nodes[0].add_system_netns(&stranger);
    cluster::plug(&c.underlay, &stranger, "p9", "192.168.77.9");
    let bridge = c.capture_on(&n0, "rcon-cluster", "icmp");
    let send = |ns: &str, src: &str| {
        sh(&format!("nsenter --net=/var/run/netns/{ns} python3 -c '{SEND_IPIP}' {src} {ip} 192.168.77.1"));
    };
    send(&stranger, "10.244.9.9");
    send(&n1, "10.244.2.99");
    // The peer's packet was sent after the stranger's, on the same path.
    wait_until("the peer's IPIP packet on node 0's bridge", || {
        std::fs::read_to_string(&bridge).unwrap_or_default().contains(&format!("10.244.2.99 > {ip}: ICMP echo request"))
    });
    let seen = std::fs::read_to_string(&bridge).unwrap();
    assert!(!seen.contains("10.244.9.9"), "IPIP from a stranger reached the pods: {seen}");

    // Repair: the underlay's filter, then the device.
    let repair = || c.nodes[1].ok(&["cluster", "repair"]).trim().to_string();
    assert_eq!(repair(), "", "a repair with nothing lost did something");
    c.node_sh(1, "tc filter del dev u0 ingress");
    assert!(!c.reaches(1, &ip), "a ping passed without node 1's ingress program");
    assert_eq!(repair(), "re-attached the eBPF IPIP programs");
    assert!(c.reaches(1, &ip), "no ping after the programs came back");
    c.node_sh(1, "ip link del rcon-ebpf");
    assert!(!c.reaches(1, &ip), "a ping passed without rcon-ebpf");
    assert_eq!(repair(), "recreated device rcon-ebpf");
    assert!(c.reaches(1, &ip), "no ping after rcon-ebpf came back");
    c.nodes[0].ok(&["rm", "-f", "srv"]);
}

/// The entries of the shortcut on node `i`'s cluster bridge (bpftool's JSON
/// map dump), or None when the bridge has no shortcut.
fn shortcut_entries(c: &cluster::Cluster, i: usize) -> Option<Vec<serde_json::Value>> {
    let out = c.node_sh(i, "tc filter show dev rcon-cluster egress");
    let id = out.split_whitespace().collect::<Vec<_>>().windows(2).find(|w| w[0] == "id").map(|w| w[1].to_string())?;
    let map = map_ids(&id).pop().expect("the shortcut program has a map");
    serde_json::from_str(&sh(&format!("bpftool -j map dump id {map}"))).unwrap()
}

/// A decapsulated packet keeps the kernel's tunnel marks, so the cluster
/// bridge would cut each bulk TCP packet into MTU-sized ones in software.
/// The bridge's shortcut hands them to the pod's port whole:
/// - a 4 MB upload from node 1's pod to node 0's arrives byte for byte,
///   and the capture on the pod's port sees packets over the MTU;
/// - without the shortcut, the same upload arrives cut (no such packet);
///   `cluster repair` puts it back with the pod's entry;
/// - the entry goes when the pod does.
#[test]
fn ipip_ebpf_bulk_tcp_reaches_the_pod_whole() {
    let mut c = cluster::cluster("eg", 2);
    c.init("ipip", &["--ipip-mode", "ebpf"]);
    let script = "nc -ll -p 7002 -e sh -c 'md5sum > /proc/1/fd/1'";
    c.nodes[0].ok(&["run", "-d", "--name", "srv", "--network", "cluster", "busybox", "sh", "-c", script]);
    let ip = crate::network::ip_of(&c.nodes[0], "srv");
    let entries = shortcut_entries(&c, 0).expect("node 0's cluster bridge has no shortcut");
    let want_key = u32::from_ne_bytes(ip.parse::<std::net::Ipv4Addr>().unwrap().octets());
    assert!(entries.iter().any(|e| e["formatted"]["key"] == want_key), "no shortcut entry for {ip}: {entries:?}");
    let port = c.node_sh(0, "ip -o link show master rcon-cluster | awk -F': ' '{print $2}' | cut -d@ -f1");
    let port = port.trim().to_string();

    let largest = upload_whole(&mut c, &port, &ip, 1);
    assert!(largest > 1480, "only packets of {largest} bytes or less reached the pod's port {port}");

    c.node_sh(0, "tc filter del dev rcon-cluster egress");
    let largest = upload(&mut c, &port, &ip, 2);
    assert!(largest <= 1480, "without the shortcut, a {largest}-byte packet reached the pod");
    assert_eq!(c.nodes[0].ok(&["cluster", "repair"]).trim(), "re-attached the eBPF IPIP programs");
    let entries = shortcut_entries(&c, 0).expect("repair left the bridge without its shortcut");
    assert!(entries.iter().any(|e| e["formatted"]["key"] == want_key), "repair did not refill {ip}: {entries:?}");
    let largest = upload_whole(&mut c, &port, &ip, 3);
    assert!(largest > 1480, "after repair, only packets of {largest} bytes or less reached the pod");

    c.nodes[0].ok(&["rm", "-f", "srv"]);
    let entries = shortcut_entries(&c, 0).expect("the bridge lost its shortcut");
    assert!(entries.is_empty(), "the pod went but its entry stayed: {entries:?}");
}

/// Upload a fresh 4 MB blob from a pod on node 1 to `ip:7002` on node 0,
/// and wait for the server to log its digest; returns the largest packet
/// (its IP length) that node 0's bridge port `port` carried to the pod
/// meanwhile. A packet over the pod MTU (1480) is a GSO packet that was
/// never cut: TCP sends at least two segments in one whenever it can.
/// [`upload`], again (3 tries at most) while no packet over the MTU reached the port: a sender
/// starved of CPU by the other tests may batch no segments at all. Without the shortcut no try
/// can pass, as the bridge cuts every packet, so the retries only forgive the sender.
fn upload_whole(c: &mut cluster::Cluster, port: &str, ip: &str, round: usize) -> usize {
    let mut largest = 0;
    for _ in 0..3 {
        largest = upload(c, port, ip, round);
        if largest > 1480 {
            break;
        }
    }
    largest
}

fn upload(c: &mut cluster::Cluster, port: &str, ip: &str, round: usize) -> usize {
    let n0 = c.nodes[0].node.clone().unwrap();
    // The packets over the MTU, and the client's FIN, which comes after all the data: once the
    // capture shows it, tcpdump has printed every packet before it.
    let cap = c.capture_on(&n0, port, "tcp dst port 7002 and (greater 1600 or tcp[tcpflags] & tcp-fin != 0)");
    let send = format!("dd if=/dev/urandom of=/b bs=1024 count=4096 2>/dev/null; md5sum < /b; nc -w 5 {ip} 7002 < /b");
    let (ok, out) = c.client(1, &send);
    assert!(ok, "round {round}: the upload failed: {out}");
    let digest = out.split_whitespace().next().unwrap().to_string();
    wait_until("the server's digest", || c.nodes[0].ok(&["logs", "srv"]).contains(&digest));
    wait_until("the client's FIN in the capture", || std::fs::read_to_string(&cap).unwrap().contains("Flags [F"));
    // `tcpdump -v` prints each packet's IP header as "(tos …, length N)".
    let seen = std::fs::read_to_string(&cap).unwrap();
    seen.split("length ").skip(1).filter_map(|t| t.split(')').next()?.parse().ok()).max().unwrap_or(0)
}

/// One IPIP packet: argv = inner source, inner destination, outer
/// destination; the kernel writes the outer header (a raw socket of
/// protocol 4), the script the inner ICMP echo request.
const SEND_IPIP: &str = r#"
import socket, struct, sys
src, dst, outer = sys.argv[1:4]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"rcon" * 8
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
socket.socket(socket.AF_INET, socket.SOCK_RAW, 4).sendto(ip + icmp, (outer, 0))
"#;
