//! The examples/ material runs as documented, so it never rots.

use std::process::Command;

use crate::common::{rcon_bin, require_root};

/// examples/netns-bundle/run.sh: a bundle that joins a named netns sees the
/// address the script put in that namespace (the script checks it and fails
/// otherwise), and its world is gone afterwards.
#[test]
fn netns_bundle_example_runs() {
    require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/netns-bundle/run.sh");
    let out = Command::new("bash").arg(script).env("RCON", rcon_bin()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run.sh failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("inet 10.98.0.1/24"), "{stdout}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/tmp/rcon-example."), "example left a mount behind");
}

/// examples/network-bundle/run.sh: bundles wired by the `rcon.network`
/// annotation talk over TCP, and runc's bundle is wired by the hook mode.
#[test]
fn network_bundle_example_runs() {
    require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/network-bundle/run.sh");
    let out = Command::new("bash").arg(script).env("RCON", rcon_bin()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run.sh failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("client got: hello-from-server"), "{stdout}");
    assert!(stdout.contains("node got via published port: hello-from-server"), "{stdout}");
    assert!(stdout.contains("runc container got: hello-from-server"), "{stdout}");
}

/// examples/pod-bundle/run.sh: bundles that list a pod's namespace files
/// (CRI-style) talk over the pod's loopback and answer on its published
/// port, a runc container joins the same pod, and `pod rm -f` removes all.
#[test]
fn pod_bundle_example_runs() {
    require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pod-bundle/run.sh");
    let out = Command::new("bash").arg(script).env("RCON", rcon_bin()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run.sh failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("client got: hello-from-expod-host"), "{stdout}");
    assert!(stdout.contains("node got via the pod's published port: hello-from-expod-host"), "{stdout}");
    assert!(stdout.contains("runc container got: hello-from-expod-host"), "{stdout}");
}
