//! Container DNS with real queries (docs/DNS.md): busybox nslookup and nc by
//! name between containers, names that answer only on their own networks
//! (also --internal and --icc=false ones), aliases, a pod and a service, PTR,
//! NXDOMAIN for a removed container, forwarding to a dnsmasq the test runs in
//! its "internet" namespace and a quick SERVFAIL once it is gone, a kill -9
//! of the resolver, bad names, the resolv.conf flags, and no resolver left
//! behind by `network rm` and `gc`.

use std::process::{Command, Stdio};

use crate::common::{pid_alive, resolver_pid, wait_pid_gone, wait_until};
use crate::network::{ip_of, net_world, NetWorld, UPLINK_INET};

/// What dnsmasq answers for every name under outside.test.
const OUTSIDE_IP: &str = "198.51.100.7";

/// The script that asks for `name`: `nslookup NAME.`, with the dot because busybox's nslookup
/// tries a bare name only with the search domains appended (getaddrinfo, as `nc web` below shows,
/// asks the name itself first under `ndots:0`). An address is asked as it is (PTR).
pub(crate) fn nslookup(name: &str) -> String {
    let dot = if name.parse::<std::net::Ipv4Addr>().is_ok() { "" } else { "." };
    format!("nslookup {name}{dot} 2>&1")
}

/// [`nslookup`] from a throwaway container on `net`: its output.
fn lookup(nw: &NetWorld, net: &str, name: &str) -> String {
    nw.client(net, &nslookup(name)).1
}

/// The addresses nslookup's output `out` gives for `name` (none: it did not resolve).
pub(crate) fn addresses_in(out: &str, name: &str) -> Vec<String> {
    let Some((_, after)) = out.split_once(&format!("Name:\t{name}")) else { return Vec::new() };
    after.lines().filter_map(|l| l.strip_prefix("Address: ")).map(|a| a.trim().to_string()).collect()
}

/// The address `name` resolves to on `net`, if it resolves.
fn resolves(nw: &NetWorld, net: &str, name: &str) -> Option<String> {
    addresses_in(&lookup(nw, net, name), name).into_iter().next()
}

/// The resolver's worker: the supervisor's one child.
fn worker_pid(supervisor: i32) -> Option<i32> {
    let kids = std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).ok()?;
    kids.split_whitespace().next()?.parse().ok()
}

/// A world whose resolv.conf names a dnsmasq in the internet namespace as the upstream.
fn dns_world(tag: &str) -> NetWorld {
    let mut nw = net_world(tag, "nftables");
    let conf = nw.w.dir.path().join("resolv.conf");
    std::fs::write(&conf, format!("nameserver {UPLINK_INET}\nsearch corp.test\n")).unwrap();
    nw.w.env.push(("RCON_RESOLV_CONF".into(), conf.display().to_string()));
    nw
}

/// dnsmasq in the internet namespace, answering outside.test with [`OUTSIDE_IP`].
fn upstream(nw: &mut NetWorld) {
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", nw.inet))
        .args(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"])
        .args(["--user=root", "--bind-interfaces", &format!("--listen-address={UPLINK_INET}")])
        .arg(format!("--address=/outside.test/{OUTSIDE_IP}"))
        .arg("--pid-file=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (hack/install-deps.sh installs dnsmasq-base)");
    nw.listeners.push(child);
    wait_until("dnsmasq listening", || nw.w.sh_in(&nw.inet, "ss -lun").contains(&format!("{UPLINK_INET}:53")));
}

#[test]
fn names_resolve_where_they_should() {
    let nw = dns_world("dn");
    nw.w.ok(&["network", "create", "--subnet", "10.40.0.0/24", "front"]);
    nw.w.ok(&["network", "create", "--subnet", "10.41.0.0/24", "back"]);
    let inspect = nw.w.ok(&["network", "inspect", "front"]);
    assert!(inspect.contains("\"dns\": true"), "{inspect}");
    let web = nw.server_with("web", "front", &["--network-alias", "www"]);
    let db = nw.server("db", "back");

    // By name, bytes end to end; an alias; the other network's name is not here.
    let (code, out) = nw.client("front", "cat /etc/resolv.conf; nc -w 2 web 7000");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nameserver 10.40.0.1") && out.contains("options ndots:0"), "{out}");
    assert!(out.contains("search corp.test") && out.ends_with("from-web\n"), "{out}");
    assert_eq!(resolves(&nw, "front", "www").as_deref(), Some(web.as_str()));
    assert!(lookup(&nw, "front", "db").contains("NXDOMAIN"));
    assert_eq!(resolves(&nw, "back", "db").as_deref(), Some(db.as_str()));
    assert!(lookup(&nw, "back", "web").contains("NXDOMAIN"));
    // PTR.
    let rev = lookup(&nw, "front", &web);
    assert!(rev.contains("name = web"), "{rev}");

    // A pod's name, a service's name.
    nw.w.ok(&["pod", "create", "--name", "pod1", "--network", "front"]);
    let pod_ip = resolves(&nw, "front", "pod1").expect("the pod's name");
    assert!(pod_ip.starts_with("10.40.0."), "{pod_ip}");
    nw.w.ok(&["service", "create", "svc1", "--vip", "10.96.0.50:80", "--backend", "web:7000"]);
    assert_eq!(resolves(&nw, "front", "svc1").as_deref(), Some("10.96.0.50"));

    // --internal and --icc=false networks reach their resolver too.
    nw.w.ok(&["network", "create", "--subnet", "10.42.0.0/24", "--internal", "--icc=false", "vault"]);
    let safe = nw.server("safe", "vault");
    assert_eq!(resolves(&nw, "vault", "safe").as_deref(), Some(safe.as_str()));

    // A removed container is NXDOMAIN at once.
    nw.w.ok(&["rm", "-f", "web"]);
    assert!(lookup(&nw, "front", "web").contains("NXDOMAIN"));
    assert!(lookup(&nw, "front", "www").contains("NXDOMAIN"));

    // kill -9 of the resolver: a new one answers.
    let sup = resolver_pid(&nw.w.root).expect("a recorded resolver");
    let old = worker_pid(sup).expect("a worker");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("a new worker", || worker_pid(sup).is_some_and(|p| p != old));
    assert_eq!(resolves(&nw, "back", "db").as_deref(), Some(db.as_str()));

    // The last DNS network gone: so is the resolver.
    nw.w.ok(&["service", "rm", "svc1"]);
    nw.w.ok(&["pod", "rm", "-f", "pod1"]);
    nw.w.ok(&["rm", "-f", "db", "safe"]);
    nw.w.ok(&["network", "rm", "front", "back"]);
    assert!(pid_alive(sup));
    nw.w.ok(&["network", "rm", "vault"]);
    wait_pid_gone(sup);
    assert!(resolver_pid(&nw.w.root).is_none());
}

#[test]
fn other_names_go_upstream() {
    let mut nw = dns_world("du");
    upstream(&mut nw);
    nw.w.ok(&["network", "create", "--subnet", "10.43.0.0/24", "fwd"]);
    assert_eq!(resolves(&nw, "fwd", "host.outside.test").as_deref(), Some(OUTSIDE_IP));
    // No upstream left: SERVFAIL, not a hang (busybox would say "timed out").
    for mut l in nw.listeners.drain(..) {
        let _ = l.kill();
        let _ = l.wait();
    }
    let out = lookup(&nw, "fwd", "other.outside.test");
    assert!(out.contains("SERVFAIL"), "{out}");
    // gc with a DNS network keeps the resolver; without, it goes.
    nw.w.ok(&["gc"]);
    let sup = resolver_pid(&nw.w.root).expect("a resolver");
    nw.w.ok(&["network", "update", "--disable-dns", "fwd"]);
    wait_pid_gone(sup);
    nw.w.ok(&["gc"]);
    assert!(resolver_pid(&nw.w.root).is_none());
}

#[test]
fn bad_names_and_the_container_files() {
    let nw = dns_world("db");
    nw.w.ok(&["network", "create", "--subnet", "10.44.0.0/24", "named"]);
    let long = "x".repeat(64);
    for bad in ["a_b.c", long.as_str()] {
        let err = nw.w.fails(&["run", "--rm", "--network", "named", "--name", bad, "busybox", "true"]);
        assert!(err.contains("is not a DNS name"), "{err}");
    }
    let err = nw.w.fails(&["run", "--rm", "--network", "named", "--network-alias", "x_y", "busybox", "true"]);
    assert!(err.contains("--network-alias \"x_y\""), "{err}");
    assert_eq!(nw.w.ok(&["ps", "-a", "-q"]).trim(), "", "a refused run left a container");
    let eps = nw.w.ok(&["network", "inspect", "named"]);
    assert!(eps.contains("\"endpoints\": []"), "{eps}");
    // Without DNS the same name is fine.
    nw.w.ok(&["network", "create", "--subnet", "10.45.0.0/24", "--disable-dns", "plain"]);
    nw.w.ok(&["run", "--rm", "--network", "plain", "--name", "a_b.c", "busybox", "true"]);

    // The flags land in the files.
    let files = nw.w.ok(&[
        "run",
        "--rm",
        "--network",
        "named",
        "--dns",
        "10.44.0.99",
        "--dns-search",
        "ex.test",
        "--dns-option",
        "timeout:2",
        "--add-host",
        "db.local:10.9.9.9",
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
    ]);
    assert!(files.starts_with("nameserver 10.44.0.99\nsearch ex.test\noptions timeout:2 ndots:0\n"), "{files}");
    assert!(files.contains("10.9.9.9\tdb.local\n"), "{files}");
    // No DNS: the host's nameservers; none and host: the host's file as it is.
    let plain = nw.w.ok(&["run", "--rm", "--network", "plain", "busybox", "cat", "/etc/resolv.conf"]);
    assert_eq!(plain, format!("nameserver {UPLINK_INET}\nsearch corp.test\n"));
    let none = nw.w.ok(&["run", "--rm", "--network", "none", "busybox", "cat", "/etc/resolv.conf"]);
    assert_eq!(none, plain);
    // The default bridge: off until `network update --dns`.
    let (_, out) = nw.client("bridge", "cat /etc/resolv.conf");
    assert!(out.starts_with(&format!("nameserver {UPLINK_INET}")), "{out}");
    nw.w.ok(&["network", "update", "--dns", "bridge"]);
    let c = nw.server("c1", "bridge");
    assert_eq!(resolves(&nw, "bridge", "c1").as_deref(), Some(c.as_str()));
    assert_eq!(ip_of(&nw.w, "c1"), c);
    let err = nw.w.fails(&["network", "create", "--driver", "routed", "--dns", "rt"]);
    assert!(err.contains("bridge driver only"), "{err}");
    nw.w.ok(&["rm", "-f", "c1"]);
    nw.w.ok(&["network", "rm", "named", "bridge"]);
    nw.w.ok(&["gc"]);
    assert!(resolver_pid(&nw.w.root).is_none());
}

/// A state root removed by hand, with no rcon left to stop its resolver: the
/// resolver (supervisor and worker) ends by itself within seconds, rather
/// than holding its listeners for ever.
#[test]
fn resolver_ends_when_its_state_root_is_removed() {
    let nw = net_world("dg", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.44.0.0/24", "named"]);
    nw.w.ok(&["run", "-d", "--name", "web", "--network", "named", "busybox", "sleep", "1000"]);
    let sup = resolver_pid(&nw.w.root).expect("a recorded resolver");
    let worker = worker_pid(sup).expect("a worker");
    nw.w.ok(&["rm", "-f", "web"]);
    std::fs::remove_dir_all(&nw.w.root).unwrap();
    wait_pid_gone(sup);
    wait_pid_gone(worker);
}
