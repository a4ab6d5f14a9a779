//! Kernel paths this machine's kernel lacks (ipip), exercised for real in
//! Debian's stock kernel under qemu (hack/qemu/). The VM has no network
//! device and its namespaces live inside it, so nothing here touches the
//! host's network.

use std::path::Path;
use std::process::Command;

use crate::common::{rcon_bin, require_root};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Make sure the kernel and qemu are there. `make test` fetches beforehand;
/// this covers a bare `cargo test` (fetch.sh installs only what is missing).
fn ensure_fetched() {
    if Path::new(REPO).join("hack/.cache/qemu/kernel/.kver").exists() {
        return;
    }
    let out = Command::new(Path::new(REPO).join("hack/qemu/fetch.sh")).output().unwrap();
    assert!(out.status.success(), "hack/qemu/fetch.sh failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Run one scenario of hack/qemu/scenarios/ with the rcon under test;
/// returns run.sh's success and its output.
fn run_scenario(name: &str) -> (bool, String) {
    require_root();
    ensure_fetched();
    let out = Command::new(Path::new(REPO).join("hack/qemu/run.sh"))
        .arg(Path::new(REPO).join("hack/qemu/scenarios").join(name))
        .env("RCON", rcon_bin())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Two namespaces joined by a veth, an ipip tunnel in each, and a ping across
/// it; the shipped rcon binary runs and nft takes rcon's kinds of rules.
#[test]
fn kernel_ipip_in_qemu_smoke() {
    let (ok, out) = run_scenario("ipip-smoke.sh");
    assert!(ok, "hack/qemu/run.sh failed:\n{out}");
    assert!(out.lines().any(|l| l == "RCON-QEMU-RESULT: PASS"), "no PASS line:\n{out}");
    assert!(out.contains("ipip-smoke: ok"), "{out}");
}
