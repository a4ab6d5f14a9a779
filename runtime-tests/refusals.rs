//! Input that must be refused (issue 17): a MAC another container has on the
//! network, a subnet in a reserved range, a VIP that an interface holds, a
//! cgroupsPath nested with another container's or holding rcon, names longer
//! than the kernel takes, and `--netns` on a file that is no network
//! namespace. Each refusal is one line naming the cause (and the limit), and
//! changes nothing: no state, link, rule or lease; the container that was
//! there first still answers.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::{assert_clean, pid_alive, rcon_bin, World};
use crate::lifecycle::create_start;
use crate::network::{ip_of, net_world, NetWorld};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// What a refusal must leave as it was in the node: links, addresses, rules, containers.
fn node_view(nw: &NetWorld) -> (String, String, Vec<String>) {
    let node = nw.node();
    let links = nw
        .w
        // Link-local IPv6 addresses are the kernel's, added a moment after a bridge's first port is up.
        .sh_in(node, "ip -o addr show | awk '$4 !~ /^fe80:/ {print $2, $4}' | sort; ip -o link show | awk -F': ' '{print $2}' | sort");
    let rules = nw.w.sh_in(node, "nft list ruleset 2>/dev/null || true");
    let mut ids = nw.w.containers();
    ids.sort();
    (links, rules, ids)
}

fn leases(nw: &NetWorld, net: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", net])).unwrap();
    v["leases"].clone()
}

/// A ping from a fresh container on `net` reaches `ip`, and its ARP entry shows `mac`.
fn answers_with_mac(nw: &NetWorld, net: &str, ip: &str, mac: &str) {
    let (code, out) = nw.client(net, &format!("ping -c1 -w3 {ip} >/dev/null && ip neigh show {ip}"));
    assert_eq!(code, 0, "{ip} does not answer: {out}");
    assert!(out.contains(mac), "{ip} answered from another MAC than {mac}: {out}");
}

#[test]
fn duplicate_mac_on_a_network() {
    let nw = net_world("rfm", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.41.0.0/24", "m"]);
    w.ok(&["network", "create", "--subnet", "10.42.0.0/24", "m2"]);
    let mac = "02:42:0a:29:00:99";
    let ip_a = nw.server_with("a", "m", &["--mac", mac]);
    let before = (node_view(&nw), leases(&nw, "m"));

    let err = w.fails(&["run", "-d", "--name", "b", "--network", "m", "--mac", mac, "busybox", "sleep", "1000"]);
    assert!(err.contains(&format!("--mac {mac}")) && err.contains("network m"), "{err}");
    assert_eq!((node_view(&nw), leases(&nw, "m")), before, "a refused --mac changed something");
    answers_with_mac(&nw, "m", &ip_a, mac);

    // The MACs rcon derives are taken too, and multicast or zero ones are no MACs at all.
    let derived = {
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "a"])).unwrap();
        assert_eq!(v["networks"][0]["mac"], mac, "{v}");
        nw.server("c", "m");
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "c"])).unwrap();
        v["networks"][0]["mac"].as_str().unwrap().to_string()
    };
    let err = w.fails(&["run", "-d", "--network", "m", "--mac", &derived, "busybox", "sleep", "1000"]);
    assert!(err.contains("network m"), "{err}");
    for bad in ["00:00:00:00:00:00", "01:00:5e:00:00:01"] {
        let err = w.fails(&["run", "-d", "--network", "m", "--mac", bad, "busybox", "sleep", "1000"]);
        assert!(err.contains(&format!("--mac {bad}")), "{err}");
    }

    // The same MAC on another network is fine.
    let ip_d = nw.server_with("d", "m2", &["--mac", mac]);
    answers_with_mac(&nw, "m2", &ip_d, mac);

    // Two runs racing for one new MAC: exactly one wins, and it works.
    let race = "02:42:0a:29:00:77";
    let outs: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = ["r1", "r2"]
            .map(|n| {
                s.spawn(move || {
                    (
                        n,
                        w.rcon(&[
                            "run",
                            "-d",
                            "--name",
                            n,
                            "--network",
                            "m",
                            "--mac",
                            race,
                            "busybox",
                            "sleep",
                            "1000",
                        ]),
                    )
                })
            })
            .into_iter()
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&str> = outs.iter().filter(|(_, o)| o.status.success()).map(|(n, _)| *n).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        outs.iter().map(|(n, o)| (n, String::from_utf8_lossy(&o.stderr))).collect::<Vec<_>>()
    );
    let loser = outs.iter().find(|(_, o)| !o.status.success()).unwrap();
    let err = String::from_utf8_lossy(&loser.1.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("--mac {race}")), "{err}");
    answers_with_mac(&nw, "m", &ip_of(w, winners[0]), race);
    answers_with_mac(&nw, "m", &ip_a, mac);
}

#[test]
fn subnets_in_reserved_ranges() {
    let nw = net_world("rfs", "nftables");
    let before = node_view(&nw);
    for (subnet, range) in [
        ("127.0.0.0/24", "loopback range 127.0.0.0/8"),
        ("224.0.0.0/24", "multicast range 224.0.0.0/4"),
        ("169.254.7.0/24", "link-local range 169.254.0.0/16"),
        ("0.0.0.0/16", "range 0.0.0.0/8"),
        ("255.255.255.0/24", "range 240.0.0.0/4"),
        ("96.0.0.0/3", "overlaps the loopback range 127.0.0.0/8"),
    ] {
        let err = nw.w.fails(&["network", "create", "--subnet", subnet, "lo"]);
        assert!(err.contains(&format!("--subnet {subnet}")) && err.contains(range), "{subnet}: {err}");
    }
    let err = nw.w.fails(&[
        "cluster",
        "init",
        "--cidr",
        "127.1.0.0/16",
        "--node-subnet",
        "127.1.1.0/24",
        "--backend",
        "host-gw",
    ]);
    assert!(err.contains("--cidr 127.1.0.0/16 is in the loopback range"), "{err}");
    assert_eq!(node_view(&nw), before, "a refused subnet changed the node");
    assert_eq!(nw.w.ok(&["network", "ls"]).lines().count(), 1, "a refused network was recorded");
}

#[test]
fn vip_held_by_an_interface() {
    let nw = net_world("rfv", "nftables");
    let w = &nw.w;
    w.ok(&["network", "create", "--subnet", "10.43.0.0/24", "v"]);
    let ip_a = nw.server("a", "v");
    let before = (node_view(&nw), leases(&nw, "v"));
    for (vip, cause) in
        [(ip_a.as_str(), "container"), ("10.43.0.1", "gateway of network v"), (crate::network::UPLINK_NODE, "up0")]
    {
        let err = w.fails(&["service", "create", "web", "--vip", &format!("{vip}:7000"), "--backend", "a:7000"]);
        assert!(err.contains(&format!("--vip {vip}")) && err.contains(cause), "{vip}: {err}");
    }
    assert_eq!((node_view(&nw), leases(&nw, "v")), before, "a refused VIP changed something");
    assert_eq!(w.ok(&["service", "ls"]).lines().count(), 1, "a refused service was recorded");
    let (code, out) = nw.client("v", &format!("nc -w 2 {ip_a} 7000"));
    assert_eq!((code, out.trim()), (0, "from-a"), "the container lost its traffic");

    // A free VIP inside the network's range: no container gets it afterwards, even after a gc.
    w.ok(&["service", "create", "web", "--vip", "10.43.0.50:80", "--backend", "a:7000"]);
    w.ok(&["gc"]);
    let err = w.fails(&["run", "-d", "--network", "v", "--ip", "10.43.0.50", "busybox", "sleep", "1000"]);
    assert!(err.contains("10.43.0.50") && err.contains("svc:web"), "{err}");
    // Reached from the node (a container on the same subnet would ARP for it instead).
    let out = w.sh_in(nw.node(), "busybox nc -w 2 10.43.0.50 80 </dev/null");
    assert_eq!(out.trim(), "from-a", "the service does not answer");
    // Nor does a network made later hold it.
    w.ok(&["service", "create", "dns", "--vip", "10.97.0.10:53/udp", "--backend", "a:7000"]);
    let err = w.fails(&["network", "create", "--subnet", "10.97.0.0/24", "later"]);
    assert!(err.contains("the VIP of service dns"), "{err}");
    // Removing the service gives the address back.
    w.ok(&["service", "rm", "web", "dns"]);
    nw.server_with("b", "v", &["--ip", "10.43.0.50"]);
}

/// Create `id` from bundle `b` with rcon moved into cgroup v2 group `group` first.
fn create_from_group(w: &World, group: &Path, b: &Path, id: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"", group.display()))
        .arg(rcon_bin())
        .args(["create", "--bundle", p(b), id])
        .env("RCON_ROOT", &w.root)
        .env("RCON_NETNS_DIR", &w.netns_dir)
        .env("RCON_DATA_ROOT", &w.data_root)
        .output()
        .unwrap()
}

#[test]
fn nested_cgroups_paths() {
    let w = World::new("rfc");
    let top = format!("/rcon-refuse-{}", w.name);
    let with_path = |name: &str, path: String| {
        w.bundle(name, |v| {
            v["process"]["args"] = json!(["sleep", "1000"]);
            v["linux"]["cgroupsPath"] = path.into();
        })
    };
    let a = with_path("a", format!("{top}/a"));
    let id_a = w.id("a");
    let pid = create_start(&w, &a, &id_a);
    let v2 = Path::new("/sys/fs/cgroup/unified");
    let procs = || std::fs::read_to_string(v2.join(top.trim_start_matches('/')).join("a/cgroup.procs")).unwrap();
    assert!(procs().lines().any(|l| l == pid.to_string()), "{}", procs());

    for (name, path, how) in [
        ("outer", top.clone(), "holds the cgroup"),
        ("inner", format!("{top}/a/b"), "is inside the cgroup"),
        ("same", format!("{top}/a"), "is the cgroup"),
    ] {
        let b = with_path(name, path);
        let id = w.id(name);
        let err = w.fails_files(&["create", "--bundle", p(&b), &id]);
        assert!(err.contains("linux.cgroupsPath") && err.contains(how) && err.contains(&id_a), "{name}: {err}");
        assert!(!w.root.join(&id).exists(), "{name}: a state entry is left");
    }
    // The first container is untouched, and deleting it harms nobody else.
    assert!(pid_alive(pid));
    assert!(procs().lines().any(|l| l == pid.to_string()), "{}", procs());
    assert_eq!(w.state_of(&id_a)["status"], "running");

    // A group that holds rcon itself: the root, and the parent of the group rcon runs in.
    let root = with_path("root", "/".into());
    let err = w.fails_files(&["create", "--bundle", p(&root), &w.id("root")]);
    assert!(err.contains("holds rcon itself"), "{err}");
    let outer = v2.join(format!("rcon-refuse-{}-self", w.name));
    std::fs::create_dir_all(outer.join("inner")).unwrap();
    let parent = with_path("parent", format!("/rcon-refuse-{}-self", w.name));
    let out = create_from_group(&w, &outer.join("inner"), &parent, &w.id("parent"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.trim_end().lines().count() == 1, "{err}");
    assert!(err.contains("holds rcon itself"), "{err}");
    let _ = std::fs::remove_dir(outer.join("inner"));
    let _ = std::fs::remove_dir(&outer);
    assert!(!w.root.join(w.id("parent")).exists());

    w.ok(&["delete", "--force", &id_a]);
    let _ = std::fs::remove_dir(v2.join(top.trim_start_matches('/')));
    assert_clean(&w, &[&a]);
}

#[test]
fn names_longer_than_the_kernel_takes() {
    let mut w = World::with_node("rfn");
    w.use_system_netns_dir();
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let long = |n: usize| "n".repeat(n);
    let says = |err: &str, bytes: usize, limit: usize| {
        assert!(err.contains(&format!("is {bytes} bytes; the limit is {limit}")), "{err}");
    };
    says(&w.fails_files(&["create", "--bundle", p(&b), &long(300)]), 300, 255);
    says(&w.fails(&["netns", "add", &long(256)]), 256, 255);
    says(&w.fails(&["network", "create", &long(65)]), 65, 64);
    says(&w.fails(&["service", "create", &long(129), "--vip", "10.96.0.1:80"]), 129, 128);
    says(&w.fails(&["pod", "create", "--name", &long(64), "--network", "none"]), 64, 63);
    says(&w.fails(&["pod", "create", "--network", "none", "--hostname", &long(65)]), 65, 64);
    says(&w.fails(&["run", "--name", &long(256), "busybox", "true"]), 256, 255);
    says(&w.fails(&["run", "--hostname", &long(65), "busybox", "true"]), 65, 64);
    let hn = w.bundle("hn", |v| v["hostname"] = long(65).into());
    let err = w.fails_files(&["create", "--bundle", p(&hn), &w.id("hn")]);
    assert!(err.contains("field hostname"), "{err}");
    says(&err, 65, 64);
    assert!(w.containers().is_empty(), "{:?}", w.containers());
    assert_eq!(w.ok(&["network", "ls"]).lines().count(), 1, "a refused network was recorded");
    assert_eq!(w.ok(&["pod", "ls"]).lines().count(), 1, "a refused pod was recorded");

    // At the limit everything works: an id of 255 bytes and a 64-byte hostname.
    let id = format!("{}-{}", w.name, long(254 - w.name.len()));
    assert_eq!(id.len(), 255);
    let ok = w.bundle("ok", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["hostname"] = long(64).into();
    });
    let pid = create_start(&w, &ok, &id);
    assert!(pid_alive(pid));
    assert_eq!(w.ok(&["exec", &id, "hostname"]).trim(), long(64));
    w.ok(&["delete", "--force", &id]);
    assert_clean(&w, &[&b, &hn, &ok]);
}

#[test]
fn attach_netns_that_is_no_network_namespace() {
    let w = World::with_node("rfa");
    w.ok(&["network", "create", "--subnet", "10.44.0.0/24", "n"]);
    let file = w.dir.path().join("plain");
    std::fs::write(&file, "").unwrap();
    for f in [p(&file), "/proc/self/ns/pid"] {
        let err = w.fails(&["network", "attach", "--netns", f, "n"]);
        assert!(err.contains("--netns") && err.contains("is not a net namespace"), "{f}: {err}");
    }
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "n"])).unwrap();
    assert_eq!((v["endpoints"].clone(), v["leases"].clone()), (json!([]), json!([])), "{v}");
}
