//! `rcon netns`: named namespaces made, used, shared with `ip netns` and
//! removed for real, proven with processes and packets.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{host_snapshot, sh, unique, World};

const SYS: &str = "/var/run/netns";

/// A background process, killed and reaped on drop (also when a test fails).
struct Proc(Child);

impl Proc {
    fn start(cmd: &str) -> Proc {
        let c =
            Command::new("sh").arg("-c").arg(format!("exec {cmd}")).stdin(Stdio::null()).stdout(Stdio::null()).spawn();
        Proc(c.expect("spawning"))
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ino(p: impl AsRef<Path>) -> u64 {
    std::fs::metadata(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display())).ino()
}

/// Wait until `p` has left our network namespace (its exec happened).
fn wait_moved(p: &Proc) {
    let ours = ino("/proc/self/ns/net");
    let theirs = format!("/proc/{}/ns/net", p.pid());
    wait_for("the process to enter its namespace", || {
        std::fs::metadata(&theirs).map(|m| m.ino() != ours).unwrap_or(false)
    });
}

fn file(w: &World, name: &str) -> String {
    w.netns_dir.join(name).to_str().unwrap().to_string()
}

/// Run `cmd` in the network namespace mounted at `ns` (no /sys remount needed for `ip`).
fn in_ns(ns: &str, cmd: &str) -> String {
    sh(&format!("nsenter --net={ns} {cmd}"))
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(|l| l.split_whitespace().next().unwrap_or("").to_string()).collect()
}

/// Mount points at or under `dir`, from our mount namespace (the host's).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(String::from)
        .collect()
}

/// None of `names` is a link or a netns name in the root namespace.
fn assert_host_clean(names: &[&str]) {
    let (links, netns) = host_snapshot();
    for n in names {
        assert!(!lines(&links).iter().any(|l| l.split('@').next() == Some(n)), "{n} left as a host link");
        assert!(!lines(&netns).iter().any(|l| l == n), "{n} left in {SYS}");
    }
}

#[test]
fn veth_ping_between_two_named_namespaces() {
    let w = World::new("nsping");
    let (a, b, va, vb) = (unique("a"), unique("b"), unique("v"), unique("v"));
    w.ok(&["netns", "add", &a]);
    w.ok(&["netns", "add", &b]);
    assert_eq!(w.ok(&["netns", "list"]), format!("{}\n", [&a, &b].map(|s| s.as_str()).join("\n")));
    let (fa, fb) = (file(&w, &a), file(&w, &b));
    // The pair is born inside A; one end moves to B by file path.
    in_ns(&fa, &format!("ip link add {va} type veth peer name {vb}"));
    in_ns(&fa, &format!("ip link set {vb} netns {fb}"));
    in_ns(&fa, &format!("ip addr add 10.200.0.1/24 dev {va}"));
    in_ns(&fa, &format!("ip link set {va} up"));
    in_ns(&fb, &format!("ip addr add 10.200.0.2/24 dev {vb}"));
    in_ns(&fb, &format!("ip link set {vb} up"));
    let out = w.ok(&["netns", "exec", &a, "busybox", "ping", "-c", "2", "-W", "3", "10.200.0.2"]);
    assert!(out.contains("2 packets received"), "{out}");
    // exec mounts a fresh sysfs, so /sys shows B's devices, not the host's.
    assert_eq!(w.ok(&["netns", "exec", &b, "ls", "/sys/class/net"]), format!("lo\n{vb}\n"));
    assert_host_clean(&[&va, &vb]);
    assert!(!sh("ip -o addr show").contains("10.200.0."), "address leaked to the host");

    w.ok(&["netns", "delete", &a, &b]);
    assert_eq!(w.ok(&["netns", "list"]), "");
    assert_eq!(mounts_under(&w.netns_dir), [w.netns_dir.to_str().unwrap()], "only the dir itself stays mounted");
    assert_host_clean(&[&a, &b, &va, &vb]);
}

#[test]
fn ip_netns_interop_both_ways() {
    let mut w = World::new("nsip");
    let (x, y) = (unique("nsx"), unique("nsy"));
    w.system_netns.extend([x.clone(), y.clone()]);
    let rcon = |args: &[&str]| w.ok(&[&["--netns-dir", SYS], args].concat());

    // rcon adds, ip uses.
    rcon(&["netns", "add", &x]);
    assert!(lines(&sh("ip netns list")).contains(&x), "ip netns list misses {x}");
    let links = sh(&format!("ip netns exec {x} ip -o link"));
    assert_eq!(lines(&links), ["1:"], "{links}");
    // ip adds, rcon uses.
    sh(&format!("ip netns add {y}"));
    assert!(lines(&rcon(&["netns", "list"])).contains(&y));
    let links = rcon(&["netns", "exec", &y, "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"), "{links}");

    // identify/pids agree both ways on a process that `ip netns exec` started.
    let p = Proc::start(&format!("ip netns exec {x} sleep 30"));
    wait_moved(&p);
    let pid = p.pid().to_string();
    assert_eq!(rcon(&["netns", "identify", &pid]), format!("{x}\n"));
    assert_eq!(sh(&format!("ip netns identify {pid}")).trim(), x);
    assert!(lines(&rcon(&["netns", "pids", &x])).contains(&pid));

    // Each deletes what the other made.
    rcon(&["netns", "delete", &y]);
    assert!(!lines(&sh("ip netns list")).contains(&y));
    sh(&format!("ip netns delete {x}"));
    assert!(!lines(&rcon(&["netns", "list"])).contains(&x));
    assert_eq!(rcon(&["netns", "identify", &pid]), "", "the process outlives the name");
    p.kill();
    assert_host_clean(&[&x, &y]);
    assert!(mounts_under(Path::new(SYS)).iter().all(|m| !m.ends_with(&x) && !m.ends_with(&y)));
}

#[test]
fn attach_names_a_running_process() {
    let w = World::new("nsatt");
    let (n, link) = (unique("att"), unique("v"));
    let p = Proc::start("unshare -n sleep 30");
    wait_moved(&p);
    let pid = p.pid().to_string();
    w.ok(&["netns", "attach", &n, &pid]);
    assert_eq!(ino(file(&w, &n)), ino(format!("/proc/{pid}/ns/net")));
    assert_eq!(w.ok(&["netns", "identify", &pid]), format!("{n}\n"));
    assert_eq!(w.ok(&["netns", "pids", &n]), format!("{pid}\n"));
    // A link made through the name is seen by the process, and the other way round.
    w.ok(&["netns", "exec", &n, "ip", "link", "add", &link, "type", "veth", "peer", "name", &format!("{link}p")]);
    in_ns(&format!("/proc/{pid}/ns/net"), &format!("ip link show {link}"));
    assert_eq!(w.fails(&["netns", "attach", &n, &pid]).trim(), format!("rcon: netns {n} already exists"));

    // The name keeps the namespace alive after its last process exits.
    p.kill();
    w.ok(&["netns", "exec", &n, "ip", "link", "show", &link]);
    assert_eq!(w.ok(&["netns", "pids", &n]), "");
    let err = w.fails(&["netns", "attach", "other", &pid]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!w.netns_dir.join("other").exists(), "failed attach left a file");
    w.ok(&["netns", "delete", &n]);
    assert_host_clean(&[&link, &n]);
}

#[test]
fn delete_while_in_use_keeps_the_process_working() {
    let w = World::new("nsdel");
    let n = unique("del");
    w.ok(&["netns", "add", &n]);
    let f = file(&w, &n);
    let before = ino(&f);
    in_ns(&f, "ip link set lo up");
    let server = Proc::start(&format!(
        "nsenter --net={f} socat TCP-LISTEN:7000,bind=127.0.0.1,reuseaddr,fork SYSTEM:'echo pong'"
    ));
    let ask = |ns: &str| {
        let out = Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .args(["socat", "-T3", "-", "TCP:127.0.0.1:7000"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("the server to listen", || ask(&f) == "pong\n");

    w.ok(&["netns", "delete", &n]);
    assert!(!Path::new(&f).exists() && !lines(&w.ok(&["netns", "list"])).contains(&n));
    assert!(mounts_under(&w.netns_dir).iter().all(|m| !m.ends_with(&n)), "mount left behind");
    // The namespace lives on with its process: same namespace, still serving.
    let theirs = format!("/proc/{}/ns/net", server.pid());
    assert_eq!(ino(&theirs), before);
    assert_eq!(ask(&theirs), "pong\n");

    assert_eq!(w.fails(&["netns", "delete", &n]).trim(), format!("rcon: netns {n} does not exist"));
    assert_eq!(w.fails(&["netns", "exec", &n, "true"]).trim(), format!("rcon: netns {n} does not exist"));
    server.kill();
}

#[test]
fn bad_names_duplicates_and_stale_files() {
    let w = World::new("nsbad");
    let n = unique("dup");
    w.ok(&["netns", "add", &n]);
    let before = ino(file(&w, &n));
    for bad in ["a/b", "..", ".", ".hidden", "x y"] {
        let err = w.fails(&["netns", "add", bad]);
        assert!(err.contains("invalid netns id"), "{bad:?}: {err}");
        w.fails(&["netns", "delete", bad]);
    }
    assert_eq!(std::fs::read_dir(&w.netns_dir).unwrap().count(), 1, "a bad name left a file");

    assert_eq!(w.fails(&["netns", "add", &n]).trim(), format!("rcon: netns {n} already exists"));
    assert_eq!(ino(file(&w, &n)), before, "the duplicate add replaced the namespace");
    w.ok(&["netns", "exec", &n, "true"]);
    w.fails(&["netns", "delete"]);

    // A plain file where a name should be: refused by exec, removable by delete.
    std::fs::write(w.netns_dir.join("stale"), "").unwrap();
    assert!(w.fails(&["netns", "exec", "stale", "true"]).contains("not a net namespace"));
    w.ok(&["netns", "delete", "stale", &n]);
    assert_eq!(w.fails(&["netns", "delete", &n]).trim(), format!("rcon: netns {n} does not exist"));
    assert_eq!(w.ok(&["netns", "list"]), "");
}

#[test]
fn twenty_parallel_adds() {
    let w = World::new("nspar");
    let names: Vec<String> = (0..20).map(|_| unique("p")).collect();
    // The first add also creates the dir: all 20 race on ensure_dir.
    let kids: Vec<Child> =
        names.iter().map(|n| w.cmd(&["netns", "add", n]).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for (n, k) in names.iter().zip(kids) {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success(), "add {n}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut inodes: Vec<u64> = names.iter().map(|n| ino(file(&w, n))).collect();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(inodes.len(), 20, "namespaces are not distinct");
    let dir = w.netns_dir.to_str().unwrap().to_string();
    let mounts = mounts_under(&w.netns_dir);
    assert_eq!(mounts.iter().filter(|m| **m == dir).count(), 1, "the dir was mounted more than once: {mounts:?}");
    assert_eq!(mounts.len(), 21);

    let args: Vec<&str> = ["netns", "delete"].into_iter().chain(names.iter().map(|s| s.as_str())).collect();
    w.ok(&args);
    assert_eq!(mounts_under(&w.netns_dir), [dir]);
    let netns_dir: PathBuf = w.netns_dir.clone();
    drop(w);
    assert!(mounts_under(&netns_dir).is_empty(), "the world left mounts");
}

#[test]
fn exec_has_its_own_sys_etc_and_exit_status() {
    let w = World::new("nsexec");
    let n = unique("etc");
    w.ok(&["netns", "add", &n]);
    let etc = EtcNetns::new(&n);
    std::fs::write(etc.0.join("hosts"), "10.1.2.3 rcon-netns-test\n").unwrap();
    assert_eq!(w.ok(&["netns", "exec", &n, "cat", "/etc/hosts"]), "10.1.2.3 rcon-netns-test\n");
    assert!(!std::fs::read_to_string("/etc/hosts").unwrap().contains("rcon-netns-test"));
    assert_eq!(w.ok(&["netns", "exec", &n, "ls", "/sys/class/net"]), "lo\n");
    assert!(mounts_under(Path::new("/sys")).iter().filter(|m| *m == "/sys").count() == 1, "exec leaked a /sys mount");
    let st = w.cmd(&["netns", "exec", &n, "sh", "-c", "exit 7"]).status().unwrap();
    assert_eq!(st.code(), Some(7));
    let err = w.fails(&["netns", "exec", &n, "/nonexistent/cmd"]);
    assert!(err.contains("/nonexistent/cmd"), "{err}");
    w.ok(&["netns", "delete", &n]);
}

/// /etc/netns/NAME for one test, removed on drop (with /etc/netns if we made it).
struct EtcNetns(PathBuf, bool);

impl EtcNetns {
    fn new(name: &str) -> EtcNetns {
        let made_parent = !Path::new("/etc/netns").exists();
        let d = Path::new("/etc/netns").join(name);
        std::fs::create_dir_all(&d).unwrap();
        EtcNetns(d, made_parent)
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if self.1 {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

#[test]
fn library_enter_moves_only_this_thread() {
    use rcon::net::netns;
    let w = World::new("nsenter");
    let n = unique("lib");
    let f = netns::add(&w.netns_dir, &n).unwrap();
    let (target, main_ns) = (ino(&f), ino("/proc/thread-self/ns/net"));
    let dir = w.netns_dir.clone();
    std::thread::spawn(move || {
        let ns = netns::open(&dir, &n).unwrap();
        let guard = netns::enter(&ns).unwrap();
        assert_eq!(ino("/proc/thread-self/ns/net"), target);
        drop(guard);
        assert_eq!(ino("/proc/thread-self/ns/net"), main_ns);
        netns::delete(&dir, &n).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(ino("/proc/thread-self/ns/net"), main_ns);
}
