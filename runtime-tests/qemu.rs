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

/// Run a scenario that must pass and print each of `wants`.
fn assert_scenario(name: &str, wants: &[&str]) {
    let (ok, out) = run_scenario(name);
    assert!(ok, "hack/qemu/run.sh failed:\n{out}");
    assert!(out.lines().any(|l| l == "RCON-QEMU-RESULT: PASS"), "no PASS line:\n{out}");
    for want in wants {
        assert!(out.contains(want), "no {want:?}:\n{out}");
    }
}

/// Two namespaces joined by a veth, an ipip tunnel in each, and a ping across
/// it; the shipped rcon binary runs and nft takes rcon's kinds of rules.
#[test]
fn kernel_ipip_in_qemu_smoke() {
    assert_scenario("ipip-smoke.sh", &["ipip-smoke: ok"]);
}

/// rcon's ipip backend between two node namespaces in the VM: kernel IPIP on
/// both (ping, DF pings of 1400 and 1480 bytes, 1 MB TCP by md5, IP proto 4
/// with the pods' addresses on the underlay, `node rm` cuts off), then one
/// node on the userspace data plane against the other's kernel one: pings
/// and 1 MB TCP both ways. Needs ethtool on the host (`hack/install-deps.sh`).
#[test]
fn cluster_ipip_kernel_and_userspace_in_qemu() {
    assert_scenario(
        "cluster-ipip.sh",
        &[
            "cluster-ipip: phase1: wire: IP proto 4",
            "cluster-ipip: phase1 kernel-kernel ok",
            "cluster-ipip: phase2 kernel-userspace ok",
            "cluster-ipip: ok",
        ],
    );
}

/// The eBPF IPIP plane (node b) against the kernel's ipip device (node a)
/// in Debian's 6.1 kernel: the programs load and attach there, and ping,
/// DF pings, 1 MB TCP both ways and the wire match (hack/qemu/scenarios/cluster-ipip-ebpf.sh).
#[test]
fn cluster_ipip_ebpf_talks_to_kernel_ipip_in_qemu() {
    assert_scenario("cluster-ipip-ebpf.sh", &["cluster-ipip-ebpf: kernel-ebpf ok"]);
}

/// The userspace plane receiving what the kernel's sends over a veth with
/// its offloads on (unfinished inner checksums, GSO packets): TCP both ways.
#[test]
fn cluster_ipip_userspace_receives_offloaded_kernel_packets_in_qemu() {
    assert_scenario("cluster-ipip-offload.sh", &["cluster-ipip-offload: kernel-offload-userspace ok"]);
}

/// The test worlds' sysctl baseline (hack/lib/netns-baseline.conf, "Test worlds and host sysctls" in
/// common/mod.rs) on a host whose root namespace forwards, filters reverse paths and routes localnet, as a
/// Docker or Kubernetes host does: the VM's root namespace is set so first. A namespace made without the
/// baseline inherits ip_forward=1 (the control); the world's node starts with forwarding 0 and forwards
/// nothing, rcon's bridge network turns ip_forward on and nothing else, a pod reaches the internet through
/// masquerade and one on an --internal network does not, and the last network's removal puts 0 back.
#[test]
fn host_sysctls_do_not_leak_into_worlds_in_qemu() {
    assert_scenario(
        "host-sysctls.sh",
        &[
            "host-sysctls: control: a namespace made without the baseline inherits them",
            "host-sysctls: before rcon: the node does not forward (inet -> lan unanswered)",
            "host-sysctls: p1 -> inet:8080 answered (inet has no route to 10.10.0.0/24: masqueraded)",
            "host-sysctls: p2 on vault: gateway yes, internet no",
            "host-sysctls: ok",
        ],
    );
}

/// A pure cgroup v2 host (the VM mounts only cgroup2): device rules become a
/// BPF cgroup device program. A container without rules opens a TUN node it
/// made (the control); one whose config denies all devices still reads
/// /dev/zero and writes /dev/null, may mknod, and cannot open that node; its
/// cgroup goes with `delete`. A pids limit is applied in the v2 group, or,
/// until rcon writes v2 resources, refused in one line.
#[test]
fn cgroup_v2_devices_and_limits_in_qemu() {
    assert_scenario(
        "cgroup-v2.sh",
        &[
            "cgroup-v2: control: no device rules, the TUN node opens",
            "cgroup-v2: /dev/zero read, /dev/null written",
            "cgroup-v2: c 10:200: mknod yes, open: Operation not permitted",
            "cgroup-v2: pids.max 16, memory.max 32 MiB, cpu.max 50000 100000, cpu.weight 39 (shares 1024)",
            "cgroup-v2: a fork loop stops at the pids limit",
            "cgroup-v2: the hog was OOM-killed: exit 137",
            "cgroup-v2: pod: memory.max 48 MiB, pids.max 24, pause in pod/pause, the member nested and OOM-killed: exit 137",
            "cgroup-v2: ok",
        ],
    );
}
