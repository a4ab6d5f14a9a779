//! The examples/ material runs as documented, so it never rots.

use std::process::Command;

use crate::common::{rcon_bin, require_root};

/// examples/netns-bundle/run.sh: a bundle that joins a named netns sees the
/// address the script put in that namespace (the script checks it and fails
/// otherwise), and its world is gone afterwards.
#[test]
fn netns_bundle_example_runs() {
    let stdout = run_example("netns-bundle");
    assert!(stdout.contains("inet 10.98.0.1/24"), "{stdout}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/tmp/rcon-example."), "example left a mount behind");
}

/// Run examples/NAME/run.sh with the rcon under test; its stdout, once it succeeded.
fn run_example(name: &str) -> String {
    require_root();
    let script = format!("{}/examples/{name}/run.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash").arg(script).env("RCON", rcon_bin()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name}/run.sh failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// examples/network-bundle/run.sh: bundles wired by the `rcon.network`
/// annotation talk over TCP, and runc's bundle is wired by the hook mode.
#[test]
fn network_bundle_example_runs() {
    let stdout = run_example("network-bundle");
    assert!(stdout.contains("client got: hello-from-server"), "{stdout}");
    assert!(stdout.contains("node got via published port: hello-from-server"), "{stdout}");
    assert!(stdout.contains("runc container got: hello-from-server"), "{stdout}");
}

/// examples/pod-bundle/run.sh: bundles that list a pod's namespace files
/// (CRI-style) talk over the pod's loopback and answer on its published
/// port, a runc container joins the same pod, and `pod rm -f` removes all.
#[test]
fn pod_bundle_example_runs() {
    let stdout = run_example("pod-bundle");
    assert!(stdout.contains("client got: hello-from-expod-host"), "{stdout}");
    assert!(stdout.contains("node got via the pod's published port: hello-from-expod-host"), "{stdout}");
    assert!(stdout.contains("runc container got: hello-from-expod-host"), "{stdout}");
}
