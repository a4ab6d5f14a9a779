//! No spoofing on a bridge, proved with real packets on both backends. A
//! container with Docker's default capabilities (NET_RAW) sends, with
//! busybox `arping`, a gratuitous ARP and an ARP reply claiming a neighbour's
//! address and the gateway's at its own MAC; and an IPv4 datagram with the
//! neighbour's source address (crafted on an AF_PACKET socket in its
//! namespace). On a protected network neither the node's neighbour cache nor
//! the neighbour's changes, and the datagram never arrives; with
//! `--allow-spoofing` every one of them lands, so the test can fail. Also:
//! the set holds one element per attached container and none after detach,
//! gc after a killed attach, and a flushed ruleset is restored.

use std::process::{Child, Command, Stdio};

use crate::common::{sh, wait_until};
use crate::network::{ip_of, net_world, NetWorld};

const SUBNET: &str = "10.70.0.0/24";
const GW: &str = "10.70.0.1";
/// The node's UDP recorder (on the gateway address).
const PORT: u16 = 9999;

/// Frames to send from inside `pid`'s network namespace, as python3 builds them on an AF_PACKET socket:
/// a UDP datagram from `src` to the gateway, with the interface's own MAC as the source.
fn send_udp(pid: &str, dst_mac: &str, src: &str, payload: &str) {
    let script = format!(
        r#"
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
me = s.getsockname()[4]
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    return ~(t + (t >> 16)) & 0xffff
data = b"{payload}\n"
udp = struct.pack("!HHHH", 40000, {PORT}, 8 + len(data), 0) + data
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("{src}"), socket.inet_aton("{GW}"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s.send(bytes.fromhex("{dst}") + me + b"\x08\x00" + ip + udp)
"#,
        dst = dst_mac.replace(':', "")
    );
    let out = Command::new("nsenter")
        .args([&format!("--net=/proc/{pid}/ns/net"), "/usr/bin/python3", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
}

/// The MAC `ip` is at in the neighbour cache of namespace `ns` (a `nsenter --net=` path), if any.
fn neigh(ns: &str, ip: &str) -> String {
    let out = sh(&format!("nsenter --net={ns} ip neigh show {ip}"));
    out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).unwrap_or("none").to_string()
}

struct Recorder {
    child: Child,
    file: std::path::PathBuf,
}

impl Recorder {
    /// Every datagram to the gateway's port, one line each, into a file.
    fn start(nw: &NetWorld) -> Recorder {
        let file = nw.w.dir.path().join("udp.log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", nw.node()))
            .args([
                "socat",
                "-u",
                &format!("UDP-RECV:{PORT},bind={GW}"),
                &format!("OPEN:{},creat,append", file.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the UDP recorder", || nw.w.sh_in(nw.node(), "ss -lun").contains(&format!(":{PORT}")));
        Recorder { child, file }
    }

    fn seen(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The elements of the anti-spoofing sets in the node.
fn elements(nw: &NetWorld) -> usize {
    let out = nw.w.sh_in(nw.node(), "nft -j list table bridge rcon 2>/dev/null || true");
    out.matches("\"elem\": {").count()
}

/// Every attack from `atk`, on network `net` holding neighbour `victim`. Returns whether any landed:
/// (the node's cache took the victim's address at the attacker's MAC, the victim's cache took the
/// gateway's, the spoofed datagram arrived).
fn attack(nw: &NetWorld, rec: &Recorder, round: &str) -> (bool, bool, bool) {
    let (victim_pid, atk_pid) = (pid(nw, "victim"), pid(nw, "atk"));
    let victim_ip = ip_of(&nw.w, "victim");
    let victim_ns = format!("/proc/{victim_pid}/ns/net");
    let node_ns = format!("/var/run/netns/{}", nw.node());
    let bridge_mac =
        nw.w.sh_in(nw.node(), "ip -o link show rcon-guarded | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2");
    let bridge_mac = bridge_mac.trim();
    let atk: serde_json::Value = serde_json::from_str(&nw.w.ok(&["inspect", "atk"])).unwrap();
    let atk_mac = atk["networks"][0]["mac"].as_str().unwrap();
    // Both caches hold the truth first: the node pings the victim (and so the victim learns the gateway).
    nw.w.sh_in(nw.node(), &format!("busybox ping -c1 -w3 {victim_ip}"));
    let victim_mac = neigh(&node_ns, &victim_ip);
    assert_ne!(victim_mac, "none");
    assert_eq!(neigh(&victim_ns, GW), bridge_mac);
    // busybox arping binds a probe socket to the claimed sender address: the namespace lets it bind an
    // address it does not hold (a sysctl of the attacker's own namespace; no capability is added).
    sh(&format!("nsenter --net=/proc/{atk_pid}/ns/net sysctl -qw net.ipv4.ip_nonlocal_bind=1"));
    // -U: gratuitous ARP (a broadcast request, sender = target = IP); -A -s IP: an ARP reply from IP.
    for ip in [victim_ip.as_str(), GW] {
        for flags in [&["-U"][..], &["-A", "-s", ip]] {
            let mut args = vec!["exec", "atk", "arping", "-c", "2", "-I", "eth0"];
            args.extend_from_slice(flags);
            args.push(ip);
            // -A exits 1 as nobody answers a reply; what matters is that both were sent.
            let out = nw.w.rcon(&args);
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                said.contains("Sent 2 probe"),
                "arping {flags:?} {ip}: {said} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    send_udp(&atk_pid, bridge_mac, &victim_ip, &format!("spoofed-{round}"));
    // Its own datagram, sent last down the same port, marks that everything before it got through or not.
    let atk_ip = ip_of(&nw.w, "atk");
    send_udp(&atk_pid, bridge_mac, &atk_ip, &format!("legit-{round}"));
    wait_until("the attacker's own datagram", || rec.seen().contains(&format!("legit-{round}")));
    (
        neigh(&node_ns, &victim_ip) == atk_mac,
        neigh(&victim_ns, GW) == atk_mac,
        rec.seen().contains(&format!("spoofed-{round}")),
    )
}

fn pid(nw: &NetWorld, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["inspect", name])).unwrap();
    v["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {v}")).to_string()
}

fn protected_then_allowed(backend: &str) {
    let nw = net_world(&format!("as{}", &backend[..1]), backend);
    nw.w.ok(&["network", "create", "--subnet", SUBNET, "--bridge", "rcon-guarded", "guarded"]);
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", "guarded"])).unwrap();
    assert_eq!(v["allow_spoofing"], false, "{v}");
    nw.server("victim", "guarded");
    nw.w.ok(&["run", "-d", "--name", "atk", "--network", "guarded", "busybox", "sleep", "600"]);
    assert_eq!(elements(&nw), 2, "one element per container");
    let rec = Recorder::start(&nw);
    assert_eq!(attack(&nw, &rec, "guarded"), (false, false, false), "{backend}: a spoof got through");

    // A flushed ruleset is put back by the next command that changes the firewall, and protects again.
    nw.w.sh_in(nw.node(), "nft flush ruleset");
    let out = nw.w.rcon(&["gc"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("restored rcon's rules"), "{out:?}");
    assert_eq!(elements(&nw), 2, "the restore left out an element");
    assert_eq!(attack(&nw, &rec, "healed"), (false, false, false), "{backend}: a spoof got through after the heal");

    // The same containers on a network that allows spoofing: every attack lands.
    nw.w.ok(&["rm", "-f", "victim", "atk"]);
    assert_eq!(elements(&nw), 0, "rm left elements");
    nw.w.ok(&["network", "rm", "guarded"]);
    nw.w.ok(&["network", "create", "--subnet", SUBNET, "--bridge", "rcon-guarded", "--allow-spoofing", "guarded"]);
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", "guarded"])).unwrap();
    assert_eq!(v["allow_spoofing"], true, "{v}");
    nw.server("victim", "guarded");
    nw.w.ok(&["run", "-d", "--name", "atk", "--network", "guarded", "busybox", "sleep", "600"]);
    assert_eq!(attack(&nw, &rec, "allowed"), (true, true, true), "{backend}: --allow-spoofing still blocks");
    drop(rec);
    nw.w.ok(&["rm", "-f", "victim", "atk"]);
    nw.w.ok(&["network", "rm", "guarded"]);
    let left = nw.w.sh_in(nw.node(), "nft list ruleset");
    assert!(!left.contains("bridge rcon"), "the anti-spoofing table outlived the last network: {left}");
}

#[test]
fn spoofing_is_dropped_nftables() {
    protected_then_allowed("nftables");
}

#[test]
fn spoofing_is_dropped_iptables() {
    protected_then_allowed("iptables");
}

/// attach and detach leave no element behind; nor does an attach killed after it added its element,
/// once gc runs after its namespace went.
#[test]
fn elements_follow_the_endpoints() {
    let mut nw = net_world("ae", "nftables");
    nw.w.ok(&["network", "create", "--subnet", SUBNET, "guarded"]);
    let ns = crate::common::unique("ae");
    nw.w.add_system_netns(&ns);
    let path = format!("/var/run/netns/{ns}");
    nw.w.ok(&["network", "attach", "--netns", &path, "guarded"]);
    assert_eq!(elements(&nw), 1);
    nw.w.ok(&["network", "detach", "--netns", &path, "guarded"]);
    assert_eq!(elements(&nw), 0, "detach left its element");
    let out =
        nw.w.cmd(&["network", "attach", "--netns", &path, "guarded"])
            .env("RCON_FAULT", "attach:guarded")
            .output()
            .unwrap();
    assert_eq!(out.status.code(), None, "rcon should have been killed");
    assert_eq!(elements(&nw), 1);
    nw.w.ok(&["gc"]);
    assert_eq!(elements(&nw), 1, "gc removed a live endpoint's element");
    sh(&format!("ip netns delete {ns}"));
    nw.w.system_netns.retain(|n| n != &ns);
    nw.w.ok(&["gc"]);
    assert_eq!(elements(&nw), 0, "gc left the killed attach's element");
}
