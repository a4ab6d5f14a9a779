//! OCI hooks run for real: each stage's hook gets the state on stdin with
//! its own args and env; failures and timeouts undo `create`; post hooks
//! only warn; and a createRuntime "network plugin" wires a veth into the
//! container that the container then pings through.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::{assert_clean, pid_alive, procs_rooted_in, sh, wait_pid_gone, wait_until, World};
use crate::lifecycle::{run, sh_bundle};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// Write an executable `#!/bin/sh` script.
fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// Records stdin, args (after OUT) and env to OUT.json, OUT.args, OUT.env.
const RECORDER: &str = "out=$1; shift\ncat > \"$out.json\"\nprintf '%s\\n' \"$@\" > \"$out.args\"\nenv > \"$out.env\"";

fn hook(path: &str, out: &str) -> Value {
    json!({"path": path, "args": ["recorder", out, "one", "two words"], "env": ["RT_HOOK=yes-hook", "PATH=/usr/bin:/bin"]})
}

fn read_json(path: &Path) -> Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}: {s:?}", path.display()))
}

#[test]
fn every_stage_gets_state_args_and_env() {
    let w = World::new("hkall");
    let rec = script(&w.dir.path().join("hooks/record.sh"), RECORDER);
    let out = w.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = |stage: &str| p(&out.join(stage)).to_string();
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["root"]["readonly"] = false.into();
        v["hooks"] = json!({
            "prestart": [hook(p(&rec), &o("prestart"))],
            "createRuntime": [hook(p(&rec), &o("createRuntime"))],
            "createContainer": [hook(p(&rec), &o("createContainer"))],
            // Runs in the container after pivot_root: path and output are container paths.
            "startContainer": [hook("/record.sh", "/startContainer")],
            "poststart": [hook(p(&rec), &o("poststart"))],
            "poststop": [hook(p(&rec), &o("poststop"))],
        });
    });
    std::fs::copy(&rec, b.join("rootfs/record.sh")).unwrap();
    let bundle = std::fs::canonicalize(&b).unwrap();
    let id = w.id("h");

    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let pid = w.state_of(&id)["pid"].as_i64().unwrap();
    let check = |file: PathBuf, stage: &str, status: &str| {
        let st = read_json(&file.with_extension("json"));
        assert_eq!(st["id"], id.as_str(), "{stage}: {st}");
        assert_eq!(st["pid"], pid, "{stage}: {st}");
        assert_eq!(st["status"], status, "{stage}: {st}");
        assert_eq!(st["bundle"], p(&bundle), "{stage}: {st}");
        assert!(st["ociVersion"].is_string(), "{stage}: {st}");
        let args = std::fs::read_to_string(file.with_extension("args")).unwrap();
        assert_eq!(args.lines().collect::<Vec<_>>(), ["one", "two words"], "{stage} args");
        let env = std::fs::read_to_string(file.with_extension("env")).unwrap();
        assert!(env.lines().any(|l| l == "RT_HOOK=yes-hook"), "{stage} env: {env}");
        assert!(!env.contains("RCON_ROOT"), "{stage}: rcon's environment leaked into the hook: {env}");
    };
    // runtime-tools hooks_stdin: prestart sees "created" (docs/CONFORMANCE.md).
    check(out.join("prestart"), "prestart", "created");
    check(out.join("createRuntime"), "createRuntime", "creating");
    check(out.join("createContainer"), "createContainer", "creating");
    assert!(!b.join("rootfs/startContainer.json").exists(), "startContainer ran before start");
    assert!(!out.join("poststart.json").exists(), "poststart ran before start");

    w.ok(&["start", &id]);
    check(b.join("rootfs/startContainer"), "startContainer", "created");
    check(out.join("poststart"), "poststart", "running");
    assert!(!out.join("poststop.json").exists());

    w.ok(&["kill", &id, "KILL"]);
    wait_pid_gone(pid as i32);
    w.ok(&["delete", &id]);
    check(out.join("poststop"), "poststop", "stopped");
    assert_clean(&w, &[&b]);
}

#[test]
fn failing_prestart_hook_undoes_create() {
    let w = World::new("hkfail");
    let rec = script(&w.dir.path().join("hooks/record.sh"), RECORDER);
    let bad = script(&w.dir.path().join("hooks/fail.sh"), "cat > \"$1\"; echo boom-prestart >&2; exit 3");
    let seen = w.dir.path().join("seen.json");
    let after = w.dir.path().join("after");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["hooks"] = json!({
            "prestart": [{"path": p(&bad), "args": ["fail.sh", p(&seen)]}],
            "createRuntime": [hook(p(&rec), p(&after))],
        });
    });
    let id = w.id("f");
    let err = w.fails_files(&["create", "--bundle", p(&b), &id]);
    assert!(err.contains("prestart") && err.contains(p(&bad)), "error does not name the hook: {err}");
    assert!(err.contains("boom-prestart"), "hook's stderr not reported: {err}");
    let pid = read_json(&seen)["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    wait_pid_gone(pid);
    assert!(!after.with_extension("json").exists(), "a later hook ran after the failure");
    assert!(!w.root.join(&id).exists(), "state dir left");
    assert!(procs_rooted_in(&b.join("rootfs")).is_empty());
    let err = w.fails(&["state", &id]);
    assert!(err.contains("does not exist"), "{err}");
    assert_clean(&w, &[&b]);
}

#[test]
fn hook_timeout_fails_create() {
    let w = World::new("hkto");
    let pidf = w.dir.path().join("hook.pid");
    let slow = script(&w.dir.path().join("hooks/slow.sh"), "echo $$ > \"$1\"; exec sleep 10");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["hooks"] = json!({"createRuntime": [{"path": p(&slow), "args": ["slow.sh", p(&pidf)], "timeout": 1}]});
    });
    let id = w.id("t");
    let err = w.fails_files(&["create", "--bundle", p(&b), &id]);
    assert!(err.contains("createRuntime") && err.contains("timed out"), "{err}");
    let hook_pid: i32 = std::fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
    assert!(!pid_alive(hook_pid), "the timed-out hook is still running");
    assert!(!w.root.join(&id).exists(), "state dir left");
    assert_clean(&w, &[&b]);
}

#[test]
fn failing_post_hooks_only_warn() {
    let w = World::new("hkpost");
    let bad = script(&w.dir.path().join("hooks/fail.sh"), "echo boom-post >&2; exit 1");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["hooks"] = json!({"poststart": [{"path": p(&bad)}], "poststop": [{"path": p(&bad)}]});
    });
    let id = w.id("p");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let out = w.rcon(&["start", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a failing poststart hook failed start: {err}");
    assert!(err.contains("poststart"), "no warning for the failed poststart hook: {err:?}");
    assert_eq!(w.state_of(&id)["status"], "running");
    let pid = w.state_of(&id)["pid"].as_i64().unwrap() as i32;

    let out = w.rcon(&["delete", "--force", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a failing poststop hook failed delete: {err}");
    assert!(err.contains("poststop"), "no warning for the failed poststop hook: {err:?}");
    assert!(!w.root.join(&id).exists());
    wait_pid_gone(pid);
    assert_clean(&w, &[&b]);
}

#[test]
fn create_runtime_network_plugin_wires_a_veth() {
    let w = World::new("hknet");
    w.ok(&["netns", "add", "up"]);
    let testns = w.netns_dir.join("up");
    let plugin = script(
        &w.dir.path().join("hooks/net.sh"),
        "set -e\n\
         testns=$1\n\
         pid=$(jq -r .pid)\n\
         nsenter --net=$testns ip link add rth0 type veth peer name rtc0\n\
         nsenter --net=$testns ip link set rtc0 netns /proc/$pid/ns/net\n\
         nsenter --net=$testns ip addr add 10.124.0.1/24 dev rth0\n\
         nsenter --net=$testns ip link set rth0 up\n\
         nsenter --net=/proc/$pid/ns/net ip addr add 10.124.0.2/24 dev rtc0\n\
         nsenter --net=/proc/$pid/ns/net ip link set rtc0 up",
    );
    let b = sh_bundle(&w, "b", "ip -o -4 addr show dev rtc0; ping -c 1 -W 2 10.124.0.1", |v| {
        v["hooks"] = json!({"createRuntime": [{
            "path": p(&plugin), "args": ["net.sh", p(&testns)],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        }]});
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_NET_RAW".into());
        }
    });
    let (code, out, err) = run(&w, &b, &w.id("n"));
    assert_eq!(code, 0, "ping through the plugin's veth failed: {out}{err}");
    assert!(out.contains("10.124.0.2/24"), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    // The container's netns died with it and took its veth end (and so the pair) along.
    wait_until("the veth pair to go with the container's netns", || {
        !sh(&format!("nsenter --net={} ip -o link", testns.display())).contains("rth0")
    });
    assert_clean(&w, &[&b]);
}

#[test]
fn failing_start_container_hook_fails_start() {
    let w = World::new("hkstc");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sh", "-c", "echo ran > /ran; sleep 1000"]);
        v["root"]["readonly"] = false.into();
        // Inside the container after pivot_root: busybox false.
        v["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    });
    let id = w.id("s");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let pid = w.state_of(&id)["pid"].as_i64().unwrap() as i32;
    let err = w.fails(&["start", &id]);
    assert!(err.contains("startContainer") && err.contains("/bin/false"), "{err}");
    wait_pid_gone(pid);
    assert_eq!(w.state_of(&id)["status"], "stopped");
    assert!(!b.join("rootfs/ran").exists(), "the user process ran although its startContainer hook failed");
    w.ok(&["delete", &id]);
    assert_clean(&w, &[&b]);
}
