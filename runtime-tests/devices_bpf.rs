//! `linux.resources.devices` through a BPF cgroup device program on the
//! container's v2 cgroup (src/runtime/device_prog.rs). This host has the v1
//! devices controller, so RCON_CGROUP_DEVICES=bpf asks for the program
//! instead; the pure-v2 case runs in qemu (qemu.rs, cgroup-v2.sh).
//!
//! The denied device is the TUN driver (c 10:200): without a rule anyone may
//! open it (the ioctls need CAP_NET_ADMIN, the open does not), so an open
//! refused with EPERM is the program's doing. (/dev/mem would be refused
//! anyway: it needs CAP_SYS_RAWIO.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{assert_clean, wait_until, World};

/// Make a TUN node in the container's /dev (a tmpfs), then open it read-write.
const OPEN_TUN: &str = "mknod /dev/tun c 10 200 && echo made; : <>/dev/tun && echo opened";

/// Where cgroup2 is mounted here (/sys/fs/cgroup/unified on this hybrid host).
fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line =
        info.lines().find(|l| l.split(" - ").nth(1).is_some_and(|r| r.starts_with("cgroup2 "))).expect("cgroup2");
    PathBuf::from(line.split(' ').nth(4).unwrap())
}

fn bpftool(args: &[&str]) -> std::process::Output {
    Command::new("bpftool")
        .args(args)
        .output()
        .expect("bpftool not found: run hack/install-deps.sh (Debian's bpftool package)")
}

/// The device programs attached to cgroup `dir`, as (id, name).
fn device_progs(dir: &Path) -> Vec<(u64, String)> {
    let out = bpftool(&["-j", "cgroup", "show", dir.to_str().unwrap()]);
    assert!(out.status.success(), "bpftool cgroup show {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["attach_type"] == "cgroup_device" || p["attach_type"] == "device")
        .map(|p| (p["id"].as_u64().unwrap(), p["name"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// A bundle running `sleep` with CAP_MKNOD (to make nodes to try), and `devices` as its rules.
fn bundle(w: &World, name: &str, devices: Value) -> PathBuf {
    w.bundle(name, |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_MKNOD".into());
        }
        v["linux"]["resources"] = json!({ "devices": devices });
    })
}

fn exec(w: &World, id: &str, script: &str) -> (String, String) {
    let out = w.rcon(&["exec", id, "sh", "-c", script]);
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// rcon with RCON_CGROUP_DEVICES=`knob` (unset when empty), its output in
/// files (a detached container keeps rcon's stdio); returns success and stderr.
fn rcon_with(w: &World, knob: &str, args: &[&str]) -> (bool, String) {
    let mut c = w.cmd(args);
    if !knob.is_empty() {
        c.env("RCON_CGROUP_DEVICES", knob);
    }
    let err = tempfile::NamedTempFile::new_in(w.dir.path()).unwrap();
    let status = c.stdout(std::process::Stdio::null()).stderr(err.reopen().unwrap()).status().unwrap();
    (status.success(), std::fs::read_to_string(err.path()).unwrap())
}

fn start(w: &World, b: &Path, id: &str) {
    let (ok, err) = rcon_with(w, "bpf", &["run", "--detach", "--bundle", b.to_str().unwrap(), id]);
    assert!(ok, "run {id}: {err}");
}

/// A create that must fail with one line containing `want`, leaving nothing.
fn refused(w: &World, knob: &str, b: &Path, id: &str, want: &str) {
    let (ok, err) = rcon_with(w, knob, &["create", "--bundle", b.to_str().unwrap(), id]);
    assert!(!ok, "{want}: created");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains(want), "{err:?}");
    assert!(w.containers().is_empty(), "{want}: state left: {:?}", w.containers());
    assert!(!cgroup2_mount().join("rcon").join(id).exists(), "{want}: cgroup left");
}

#[test]
fn deny_all_through_a_bpf_program_keeps_the_defaults_and_denies_the_rest() {
    let w = World::new("dbpf");
    // The control: with no rules the TUN node opens, so the denial below is the program's.
    let open = bundle(&w, "open", json!([]));
    let ctl = w.id("ctl");
    start(&w, &open, &ctl);
    let (out, err) = exec(&w, &ctl, OPEN_TUN);
    assert_eq!(out, "made\nopened\n", "control: {err}");
    assert!(device_progs(&cgroup2_mount().join("rcon").join(&ctl)).is_empty(), "no rules, no program");

    let b = bundle(&w, "deny", json!([{"allow": false, "access": "rwm"}]));
    let id = w.id("deny");
    start(&w, &b, &id);
    let dir = cgroup2_mount().join("rcon").join(&id);
    let progs = device_progs(&dir);
    assert_eq!(progs.len(), 1, "one device program on {}: {progs:?}", dir.display());
    assert_eq!(progs[0].1, "rcon_devices");
    // The program, not the v1 devices group: rcon made none.
    let v1 = Path::new("/sys/fs/cgroup/devices/rcon").join(&id);
    assert!(!v1.exists(), "{} made although the program does the job", v1.display());

    let (out, err) = exec(&w, &id, "head -c1 /dev/zero | wc -c; echo x >/dev/null && echo null-ok");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1", "null-ok"], "{err}");
    // mknod is allowed ("c *:* m"), opening the node is not.
    let (out, err) = exec(&w, &id, OPEN_TUN);
    assert_eq!(out, "made\n", "{err}");
    assert!(err.contains("/dev/tun: Operation not permitted"), "{err:?}");

    w.ok_files(&["delete", "--force", &id]);
    assert!(!dir.exists(), "{} left", dir.display());
    // The program went with the dir: the kernel frees it once the group is
    // released (a workqueue, after rmdir returns).
    let id = progs[0].0.to_string();
    wait_until(&format!("program {id} to be freed with its cgroup"), || {
        !bpftool(&["prog", "show", "id", &id]).status.success()
    });
    assert_clean(&w, &[&b, &open]);
}

#[test]
fn bad_device_lists_are_refused_before_anything_is_made() {
    let w = World::new("dbpfbad");
    let cases = [
        (
            json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]),
            "denying c 1:3 w cannot be cut out of the wider allow c 1:* rwm",
        ),
        (json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwx"}]), "access \"rwx\" has 'x'"),
        (json!([{"allow": false, "type": "p", "access": "rwm"}]), "devices[0]: type p (a FIFO) has no cgroup rule"),
    ];
    for (i, (devices, want)) in cases.into_iter().enumerate() {
        let b = bundle(&w, &format!("bad{i}"), devices);
        let id = w.id(&format!("bad{i}"));
        // Both paths check the list: v1 (the default here) and the program.
        for knob in ["", "bpf"] {
            refused(&w, knob, &b, &id, want);
        }
    }
    let b = bundle(&w, "knob", json!([{"allow": false, "access": "rwm"}]));
    refused(&w, "ebpf", &b, &w.id("knob"), "RCON_CGROUP_DEVICES=\"ebpf\": the only value is \"bpf\"");
}
