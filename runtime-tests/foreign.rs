//! Bundles and callers that other tools make: `runc spec` (Debian's runc),
//! `ctr oci spec` (Debian's containerd) and podman with `--runtime rcon`.
//! Each bundle gets only its args changed, then goes through the whole
//! lifecycle: create, start, state, exec, kill, delete, and `run --bundle`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{assert_clean, busybox_rootfs, rcon_bin, sh, wait_until, World};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// A bundle whose config.json is what `tool` printed or wrote, with args set.
fn foreign_bundle(w: &World, name: &str, tool: &str, args: Value) -> PathBuf {
    let b = w.dir.path().join("bundles").join(name);
    std::fs::create_dir_all(&b).unwrap();
    sh(&format!("cp -a {} {}/rootfs", p(&busybox_rootfs()), p(&b)));
    sh(&format!("cd {} && {tool}", p(&b)));
    let path = b.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["process"]["terminal"] = false.into();
    v["process"]["args"] = args;
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    b
}

fn status(w: &World, id: &str) -> String {
    w.state_of(id)["status"].as_str().unwrap().to_string()
}

/// create → state → start → exec → kill → delete, then `run --bundle`.
/// Returns create's stderr (for the ambient capability warning).
fn lifecycle(w: &World, b: &Path, exec_check: (&[&str], &str)) -> String {
    let id = w.id("life");
    let created = w.ok_files(&["create", "--bundle", p(b), &id]);
    assert_eq!(status(w, &id), "created");
    let st = w.state_of(&id);
    assert_eq!(st["bundle"].as_str().unwrap(), p(&std::fs::canonicalize(b).unwrap()));
    w.ok(&["start", &id]);
    assert_eq!(status(w, &id), "running");
    let mut exec = vec!["exec", id.as_str()];
    exec.extend_from_slice(exec_check.0);
    let out = w.ok(&exec);
    assert!(out.contains(exec_check.1), "exec {:?}: {out:?}", exec_check.0);
    w.ok(&["kill", &id, "KILL"]);
    wait_until("the container to stop", || status(w, &id) == "stopped");
    w.ok(&["delete", &id]);
    assert!(w.fails(&["state", &id]).contains("does not exist"));

    let ran = w.id("ran");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    let keep = cfg["process"]["args"].clone();
    cfg["process"]["args"] = json!(["sh", "-c", "echo ran-$((6*7))"]);
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    let out = w.ok(&["run", "--bundle", p(b), &ran]);
    assert_eq!(out.trim(), "ran-42");
    cfg["process"]["args"] = keep;
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
    assert_clean(w, &[b]);
    created.stderr
}

#[test]
fn runc_spec_bundle_runs_the_whole_lifecycle() {
    let w = World::new("fgrunc");
    let b = foreign_bundle(&w, "runc", "runc spec", json!(["sleep", "1000"]));
    let cfg: Value = serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert!(cfg["process"]["capabilities"].get("inheritable").is_none(), "runc spec changed: {cfg}");
    // runc's hostname, and its ambient set left out with one warning line.
    let warn = lifecycle(&w, &b, (&["hostname"], "runc"));
    let lines: Vec<&str> = warn.lines().filter(|l| l.contains("ambient")).collect();
    assert_eq!(lines.len(), 1, "{warn:?}");
    assert!(lines[0].contains("warn") && lines[0].contains("CAP_KILL"), "{warn:?}");
}

#[test]
fn ctr_oci_spec_bundle_runs_the_whole_lifecycle_with_its_device_rules() {
    let w = World::new("fgctr");
    let b = foreign_bundle(&w, "ctr", "ctr oci spec > config.json", json!(["sleep", "1000"]));
    let cfg: Value = serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["linux"]["resources"]["devices"][0]["allow"], false, "ctr oci spec changed: {cfg}");
    // containerd's spec keeps CAP_MKNOD, so only its "deny all" device rule
    // stands between the container and a disk node made with mknod; /dev/null
    // (allowed after the config's rules) still works.
    let check = "mknod /dev/sdz b 8 0; cat /dev/sdz; echo x > /dev/null && echo null-ok";
    lifecycle(&w, &b, (&["sh", "-c", check], "null-ok"));
    let id = w.id("dev");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    w.ok(&["start", &id]);
    let out = w.rcon(&["exec", &id, "sh", "-c", check]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cat: can't open '/dev/sdz': Operation not permitted"), "{err:?}");
    assert_clean(&w, &[&b]);
}

/// podman 4.3 drives rcon as its OCI runtime, on a CNI bridge network, all
/// inside a node namespace of the test's own (CNI's bridge and rules land there).
#[test]
fn podman_runs_busybox_with_rcon_on_a_cni_network() {
    let w = World::with_node("fgpod");
    let node = w.node.clone().unwrap();
    let d = w.dir.path();
    let conf = d.join("containers.conf");
    let cni = d.join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        &conf,
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\ndefault_subnet = \"10.188.0.0/24\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            p(&cni)
        ),
    )
    .unwrap();
    let podman = |args: &str| -> std::process::Output {
        let cmd = format!(
            "nsenter --net=/var/run/netns/{node} podman --root {root} --runroot {run} --tmpdir {tmp} --runtime {rcon} --cgroup-manager cgroupfs {args}",
            root = p(&d.join("podroot")),
            run = p(&d.join("podrun")),
            tmp = p(&d.join("podtmp")),
            rcon = rcon_bin(),
        );
        Command::new("sh").arg("-c").arg(&cmd).env("CONTAINERS_CONF", &conf).output().unwrap()
    };
    // podman writes mount points (/etc/hosts, /run/.containerenv) into the rootfs: a copy.
    let rootfs = d.join("rootfs");
    sh(&format!("cp -a {} {}", p(&busybox_rootfs()), p(&rootfs)));
    let run = podman(&format!(
        "run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
         --rootfs {} sh -c 'ip -4 -o addr show eth0; ping -c1 -W2 10.188.0.1 | grep -c \"bytes from\"'",
        p(&rootfs)
    ));
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    let cleanup = podman("system reset --force");
    assert!(run.status.success(), "podman run failed: {out}{err}");
    assert!(out.contains("inet 10.188.0."), "no address on podman's CNI network: {out}");
    assert!(out.trim_end().ends_with('1'), "the container did not reach its gateway: {out}");
    assert!(cleanup.status.success(), "podman system reset: {}", String::from_utf8_lossy(&cleanup.stderr));
}
