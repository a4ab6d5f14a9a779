//! Published ports (`run -p`), with real TCP and UDP on every path a packet
//! can take to them, on both firewall backends: from another host (the
//! internet namespace) to the node's uplink address, from the node itself to
//! that address and to 127.0.0.1, from a neighbour container and from the
//! container itself (hairpin), and to one host address only. Conflicts are
//! refused with nothing changed, and removal leaves no rule, element or claim.

use std::process::{Command, Stdio};

use crate::common::{sh, wait_until};
use crate::network::{net_world, NetWorld, UPLINK_NODE};

/// A TCP exchange with `ip:port` from namespace `ns` (busybox nc); what came back.
pub(crate) fn tcp_from(nw: &NetWorld, ns: &str, ip: &str, port: u16) -> String {
    nw.w.sh_in(ns, &format!("busybox nc -w 2 {ip} {port} </dev/null || true")).trim().to_string()
}

/// One UDP datagram to `ip:port` from the network namespace at `netns` (a
/// path), from `sport`; the answer, if any.
fn udp_from(netns: &str, ip: &str, port: u16, sport: u16) -> String {
    let cmd = format!("echo ping | socat -T 4 - UDP:{ip}:{port},sourceport={sport} || true");
    sh(&format!("nsenter --net={netns} sh -c '{cmd}'")).trim().to_string()
}

fn named(ns: &str) -> String {
    format!("/var/run/netns/{ns}")
}

/// The network namespace of container `name`, as a path.
fn netns_of(nw: &NetWorld, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["inspect", name])).unwrap();
    v["netns"].as_str().unwrap().to_string()
}

/// A UDP server inside container `name`'s namespace that answers every
/// datagram with `udp-NAME` (python3 from the node: the busybox image has no
/// UDP server, and socat's forking UDP server can miss a datagram that comes
/// while it re-arms).
fn udp_server(nw: &mut NetWorld, name: &str, port: u16) {
    let netns = netns_of(nw, name);
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {port}))\n\
         while True:\n    _, peer = s.recvfrom(512)\n    s.sendto(b'udp-{name}\\n', peer)\n"
    );
    let child = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["python3", "-c", &code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    nw.listeners.push(child);
    wait_until("the udp server", || sh(&format!("nsenter --net={netns} ss -lun")).contains(&format!(":{port}")));
}

/// What is left of rcon's port entries in the node.
pub(crate) fn port_rules(nw: &NetWorld, backend: &str) -> String {
    match backend {
        "nftables" => nw.w.sh_in(
            nw.node(),
            "for s in 'map ip rcon pub_any' 'map ip rcon pub_addr' 'set ip rcon hairpin'; do nft list $s 2>/dev/null | grep -i comment; done; true",
        ),
        // iptables-save quotes a comment with a digit in it (most endpoint keys), so the quote is optional.
        _ => nw.w.sh_in(nw.node(), "iptables-save -t nat | grep -E -- '--comment \"?port:' || true"),
    }
}

fn published_paths(backend: &str) {
    let mut nw = net_world(&format!("p{}", &backend[..1]), backend);
    let node = nw.node().to_string();
    let inet = nw.inet.clone();
    nw.w.ok(&["network", "create", "--subnet", "10.20.0.0/24", "web"]);
    let s1 = nw.server_with("s1", "web", &["-p", "8080:7000", "-p", "9090:9000/udp"]);
    udp_server(&mut nw, "s1", 9000);
    assert_eq!(nw.w.ok(&["port", "s1"]), "7000/tcp -> 0.0.0.0:8080\n9000/udp -> 0.0.0.0:9090\n");

    // From another host, to the node's uplink address: TCP and UDP.
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 8080), "from-s1");
    assert_eq!(udp_from(&named(&inet), UPLINK_NODE, 9090, 41001), "udp-s1");
    // From the node itself, to its own address and to 127.0.0.1.
    assert_eq!(tcp_from(&nw, &node, UPLINK_NODE, 8080), "from-s1");
    assert_eq!(tcp_from(&nw, &node, "127.0.0.1", 8080), "from-s1");
    assert_eq!(udp_from(&named(&node), UPLINK_NODE, 9090, 41005), "udp-s1");
    assert_eq!(udp_from(&named(&node), "127.0.0.1", 9090, 41002), "udp-s1");
    // From a neighbour on the same bridge (hairpin through the node's address).
    let (code, out) = nw.client("web", &format!("nc -w 2 {UPLINK_NODE} 8080"));
    assert_eq!((code, out.trim()), (0, "from-s1"));
    // From the container to its own published port.
    let out = nw.w.ok(&["exec", "s1", "nc", "-w", "2", UPLINK_NODE, "8080"]);
    assert_eq!(out.trim(), "from-s1");
    assert_eq!(udp_from(&netns_of(&nw, "s1"), UPLINK_NODE, 9090, 41007), "udp-s1");
    // The container's own address answers directly too (no DNAT involved).
    assert_eq!(tcp_from(&nw, &node, &s1, 7000), "from-s1");

    // HOSTIP: only that address. A free port picked by rcon answers as well.
    nw.server_with("s2", "web", &["-p", "127.0.0.1:8081:7000", "-p", "127.0.0.1:9092:9000/udp", "-p", "7000"]);
    udp_server(&mut nw, "s2", 9000);
    assert_eq!(tcp_from(&nw, &node, "127.0.0.1", 8081), "from-s2");
    assert_eq!(udp_from(&named(&node), "127.0.0.1", 9092, 41008), "udp-s2");
    assert_eq!(udp_from(&named(&inet), UPLINK_NODE, 9092, 41009), "", "a 127.0.0.1 UDP mapping answered on the uplink");
    // UDP from a neighbour on the bridge, through the node's address.
    assert_eq!(udp_from(&netns_of(&nw, "s2"), UPLINK_NODE, 9090, 41006), "udp-s1");
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 8081), "", "a 127.0.0.1 mapping answered on the uplink");
    let ports = nw.w.ok(&["port", "s2"]);
    let picked: u16 = ports
        .lines()
        .find(|l| l.starts_with("7000/tcp -> 0.0.0.0:"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no picked port in {ports:?}"));
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, picked), "from-s2");
    // -P: every port the image exposes (hack/mkimage.sh exposes 7000/tcp), on a free host port.
    nw.server_with("s5", "web", &["-P"]);
    let ports = nw.w.ok(&["port", "s5"]);
    let all: u16 = ports
        .strip_prefix("7000/tcp -> 0.0.0.0:")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("-P published {ports:?}"));
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, all), "from-s5");
    nw.w.ok(&["rm", "-f", "s5"]);

    // A UDP flow the node tracked before the mapping existed is forgotten
    // when the port is published: the same 5-tuple reaches the container.
    assert_eq!(udp_from(&named(&inet), UPLINK_NODE, 9191, 41003), "");
    nw.w.ok(&["run", "-d", "--name", "s3", "--network", "web", "-p", "9191:9000/udp", "busybox", "sleep", "1000"]);
    udp_server(&mut nw, "s3", 9000);
    assert_eq!(udp_from(&named(&inet), UPLINK_NODE, 9191, 41003), "udp-s3");

    // Conflicts: nothing is created, the first owner keeps its port.
    let before = (nw.w.containers().len(), port_rules(&nw, backend));
    let err = nw.w.fails(&["run", "-d", "--network", "web", "-p", "8080:80", "busybox", "true"]);
    assert!(err.contains("host port 0.0.0.0:8080/tcp is already published"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = nw.w.fails(&["run", "-d", "--network", "web", "-p", "127.0.0.1:8080:80", "busybox", "true"]);
    assert!(err.contains("already published"), "{err}");
    let listener = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{node}"))
        .args(["socat", "TCP-LISTEN:8085,reuseaddr", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    nw.listeners.push(listener);
    wait_until("the node's listener", || nw.w.sh_in(&node, "ss -ltn").contains(":8085"));
    let err = nw.w.fails(&["run", "-d", "--network", "web", "-p", "8085:80", "busybox", "true"]);
    assert!(err.contains("host port 0.0.0.0:8085/tcp is in use by a process on the node"), "{err}");
    let err = nw.w.fails(&["run", "-d", "--network", "web", "-p", "8090-8091:80-82", "busybox", "true"]);
    assert!(err.contains("differ in length"), "{err}");
    let err = nw.w.fails(&["run", "-d", "--network", "none", "-p", "8092:80", "busybox", "true"]);
    assert!(err.contains("needs an rcon network"), "{err}");
    assert_eq!((nw.w.containers().len(), port_rules(&nw, backend)), before, "a refused run changed something");
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 8080), "from-s1");

    // tcp and udp of one number belong to different containers; removing one
    // takes exactly its own entries.
    nw.server_with("s4", "web", &["-p", "9090:7000"]);
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 9090), "from-s4");
    nw.w.ok(&["rm", "-f", "s4"]);
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 9090), "");
    assert_eq!(udp_from(&named(&inet), UPLINK_NODE, 9090, 41004), "udp-s1");

    // Removal leaves zero entries and zero claims.
    nw.w.ok(&["rm", "-f", "s1", "s2", "s3"]);
    assert_eq!(port_rules(&nw, backend), "", "port entries left");
    assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, 8080), "");
    let claims = std::fs::read_dir(nw.w.data_root.join("ports")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(claims, 0, "host port claims left");
}

#[test]
fn published_ports_nftables() {
    published_paths("nftables");
}

#[test]
fn published_ports_iptables() {
    published_paths("iptables");
}

/// rcon killed (SIGKILL) at each point of an attach that publishes ports;
/// once the namespace is gone, `rcon gc` removes the claims and the entries,
/// and the port can be published again.
#[test]
fn gc_after_a_crash_releases_ports() {
    for backend in ["nftables", "iptables"] {
        let mut nw = net_world(&format!("pg{}", &backend[..1]), backend);
        nw.w.ok(&["network", "create", "--subnet", "10.21.0.0/24", "crashp"]);
        for point in ["attach:leased", "attach:recorded", "attach:wired"] {
            let ns = crate::common::unique("vp");
            nw.w.add_system_netns(&ns);
            let path = format!("/var/run/netns/{ns}");
            let out =
                nw.w.cmd(&["network", "attach", "--netns", &path, "-p", "8088:80", "-p", "8089:53/udp", "crashp"])
                    .env("RCON_FAULT", point)
                    .output()
                    .unwrap();
            assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
            sh(&format!("ip netns delete {ns}"));
            nw.w.system_netns.retain(|n| n != &ns);
            nw.w.ok(&["gc"]);
            assert_eq!(port_rules(&nw, backend), "", "{backend} {point}: port entries left");
            let claims = std::fs::read_dir(nw.w.data_root.join("ports")).map(|r| r.count()).unwrap_or(0);
            assert_eq!(claims, 0, "{backend} {point}: claims left");
        }
        // A detach killed after its record lost its ports, before the rules went: the namespace lives on,
        // and gc takes the entries and claims that no record names any more.
        let ns = crate::common::unique("vd");
        nw.w.add_system_netns(&ns);
        let path = format!("/var/run/netns/{ns}");
        nw.w.ok(&["network", "attach", "--netns", &path, "-p", "8088:80", "crashp"]);
        assert_ne!(port_rules(&nw, backend), "");
        let out =
            nw.w.cmd(&["network", "detach", "--netns", &path, "crashp"])
                .env("RCON_FAULT", "detach:unpublishing")
                .output()
                .unwrap();
        assert_eq!(out.status.code(), None, "detach should have been killed");
        nw.w.ok(&["gc"]);
        assert_eq!(port_rules(&nw, backend), "", "{backend} detach: port entries left");
        let claims = std::fs::read_dir(nw.w.data_root.join("ports")).map(|r| r.count()).unwrap_or(0);
        assert_eq!(claims, 0, "{backend} detach: claims left");
        nw.w.ok(&["network", "detach", "--netns", &path, "crashp"]);
        // The port is free again.
        nw.server_with("again", "crashp", &["-p", "8088:7000"]);
        assert_eq!(tcp_from(&nw, &nw.inet.clone(), UPLINK_NODE, 8088), "from-again");
        nw.w.ok(&["rm", "-f", "again"]);
    }
}

/// 10,000 mappings on one node: set up (one container publishing a range),
/// used (the first, a middle and the last answer), torn down (nothing left).
#[test]
fn ten_thousand_mappings() {
    for backend in ["nftables", "iptables"] {
        let nw = net_world(&format!("pk{}", &backend[..1]), backend);
        nw.w.ok(&["network", "create", "--subnet", "10.22.0.0/24", "many"]);
        nw.w.ok(&[
            "run",
            "-d",
            "--name",
            "wide",
            "--network",
            "many",
            "-p",
            "20000-29999:20000-29999",
            "busybox",
            "sh",
            "-c",
            "for p in 20000 24999 29999; do nc -ll -p $p -e echo port-$p & done; wait",
        ]);
        let count = match backend {
            "nftables" => nw.w.sh_in(nw.node(), "nft list map ip rcon pub_any | grep -o 'comment' | wc -l"),
            _ => nw.w.sh_in(nw.node(), "iptables-save -t nat | grep -c -- '-j DNAT'"),
        };
        assert_eq!(count.trim(), "10000", "{backend}");
        assert_eq!(nw.w.ok(&["port", "wide"]).lines().count(), 10000);
        let inet = nw.inet.clone();
        wait_until("the listeners", || tcp_from(&nw, &inet, UPLINK_NODE, 29999) == "port-29999");
        for p in [20000, 24999] {
            assert_eq!(tcp_from(&nw, &inet, UPLINK_NODE, p), format!("port-{p}"), "{backend}");
        }
        nw.w.ok(&["rm", "-f", "wide"]);
        assert_eq!(port_rules(&nw, backend), "", "{backend}: entries left");
        assert_eq!(std::fs::read_dir(nw.w.data_root.join("ports")).map(|r| r.count()).unwrap_or(0), 0);
    }
}
