//! Namespaces of a container: a fresh netns with only `lo`, joining a netns
//! by path (and sending real packets through a veth the test put there),
//! refusing bad namespace paths, and a pid namespace whose init is pid 1.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::common::{assert_clean, sh, World};
use crate::lifecycle::{run, run_ok, sh_bundle};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// A named netns in the world's private netns dir (made by `rcon netns add`).
fn netns(w: &World, name: &str) -> PathBuf {
    w.ok(&["netns", "add", name]);
    w.netns_dir.join(name)
}

fn set_netns_path(v: &mut serde_json::Value, path: &Path) {
    for n in v["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = p(path).into();
        }
    }
}

fn add_cap(v: &mut serde_json::Value, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        v["process"]["capabilities"][set].as_array_mut().unwrap().push(cap.into());
    }
}

#[test]
fn new_netns_has_only_lo_up() {
    let w = World::new("nslo");
    let b = sh_bundle(&w, "b", "ip -o link; readlink /proc/self/ns/net", |_| {});
    let out = run_ok(&w, &b, &w.id("lo"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let lo = lines[0];
    assert!(lo.starts_with("1: lo: <") && lo.contains(",UP"), "lo is missing or down: {lo}");
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(lines[1], host.to_str().unwrap(), "the container shares the host netns");
    assert_clean(&w, &[&b]);
}

#[test]
fn joined_netns_by_path_carries_packets() {
    let w = World::new("nsjn");
    let a = netns(&w, "a");
    let peer = netns(&w, "peer");
    let inside = |ns: &Path, cmd: &str| sh(&format!("nsenter --net={} {cmd}", ns.display()));
    inside(&a, "ip link add rtv0 type veth peer name rtv1");

    let b = sh_bundle(&w, "list", "ip -o link | cut -d: -f2 | cut -d@ -f1; readlink /proc/self/ns/net", |v| {
        set_netns_path(v, &a)
    });
    let out = run_ok(&w, &b, &w.id("l"));
    let mut names: Vec<&str> = out.lines().map(str::trim).collect();
    names[..3].sort();
    assert_eq!(names[..3], ["lo", "rtv0", "rtv1"], "{out}");
    let ino = std::fs::metadata(&a).unwrap().ino();
    assert_eq!(names[3], format!("net:[{ino}]"), "the container is not in the given netns");

    // Real packets: rtv1 goes to a second namespace, the container pings it.
    inside(&a, &format!("ip link set rtv1 netns {}", p(&peer)));
    inside(&a, "ip addr add 10.123.0.1/24 dev rtv0");
    inside(&a, "ip link set rtv0 up");
    inside(&peer, "ip addr add 10.123.0.2/24 dev rtv1");
    inside(&peer, "ip link set rtv1 up");
    let ping = sh_bundle(&w, "ping", "ping -c 1 -W 2 10.123.0.2", |v| {
        set_netns_path(v, &a);
        add_cap(v, "CAP_NET_RAW");
    });
    let (code, out, err) = run(&w, &ping, &w.id("p"));
    assert_eq!(code, 0, "ping failed: {out}{err}");
    assert!(out.contains("1 packets received"), "{out}");
    // Control: an address nobody has gets no answer.
    let miss = sh_bundle(&w, "miss", "ping -c 1 -W 1 10.123.0.9", |v| {
        set_netns_path(v, &a);
        add_cap(v, "CAP_NET_RAW");
    });
    assert_ne!(run(&w, &miss, &w.id("m")).0, 0);
    // The namespace outlives the container.
    assert!(inside(&a, "ip -o link").contains("rtv0"));
    assert_clean(&w, &[&b, &ping, &miss]);
}

#[test]
fn bad_namespace_paths_are_refused() {
    let w = World::new("nsbd");
    let regular = w.dir.path().join("not-a-netns");
    std::fs::write(&regular, "x").unwrap();
    for (tag, path) in [
        ("file", p(&regular).to_string()),
        ("uts", "/proc/self/ns/uts".to_string()),
        ("missing", "/nonexistent/ns".to_string()),
    ] {
        let b = sh_bundle(&w, tag, "true", |v| set_netns_path(v, Path::new(&path)));
        let id = w.id(tag);
        let err = w.fails_files(&["create", "--bundle", p(&b), &id]);
        assert!(err.contains("linux.namespaces[1].path"), "{err}");
        if tag != "missing" {
            assert!(err.contains("is not a net namespace"), "{err}");
        }
        assert!(!w.root.join(&id).exists(), "state left for {id}");
        assert!(w.containers().is_empty(), "{:?}", w.containers());
        assert_clean(&w, &[&b]);
    }
}

#[test]
fn pid_namespace_init_is_pid_1() {
    let w = World::new("nspd");
    let b = sh_bundle(&w, "b", "echo $$; ps -o pid,args; true", |_| {});
    let out = run_ok(&w, &b, &w.id("p"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    let init = lines.find(|l| l.trim_start().starts_with("1 ")).unwrap_or_else(|| panic!("no pid 1 in ps: {out}"));
    assert!(init.contains("sh -c"), "{init}");
    // Only the container's processes are visible: sh and ps.
    assert_eq!(out.lines().count(), 4, "{out}");

    // Control: without a pid namespace the shell is not pid 1.
    let b2 = sh_bundle(&w, "b2", "echo $$", |v| {
        let ns: Vec<serde_json::Value> =
            v["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != "pid").cloned().collect();
        v["linux"]["namespaces"] = json!(ns);
    });
    let out = run_ok(&w, &b2, &w.id("h"));
    assert_ne!(out.trim(), "1");
    assert_clean(&w, &[&b, &b2]);
}
