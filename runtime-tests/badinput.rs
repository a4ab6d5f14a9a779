//! Bad input: every refusal is one clear line on stderr and leaves nothing
//! behind (no state entry, no process, no mount of the bundle's rootfs).

use std::path::Path;

use serde_json::json;

use crate::common::{assert_clean, mountinfo_lines, pid_alive, procs_rooted_in, wait_pid_gone, wait_until, World};
use crate::lifecycle::create_start;

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// `create` fails with one line containing every one of `needles`, and leaves nothing.
fn create_fails(w: &World, b: &Path, id: &str, needles: &[&str]) -> String {
    let err = w.fails_files(&["create", "--bundle", p(b), id]);
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
    assert!(!w.root.join(id).exists(), "state entry left for {id}");
    let rootfs = b.join("rootfs");
    assert!(procs_rooted_in(&rootfs).is_empty(), "process left in {}", rootfs.display());
    assert_eq!(mountinfo_lines(&rootfs), Vec::<String>::new());
    err
}

#[test]
fn missing_bundle_dir() {
    let w = World::new("bimb");
    let b = w.dir.path().join("no-such-bundle");
    create_fails(&w, &b, &w.id("x"), &["no-such-bundle"]);
    assert!(w.containers().is_empty());
}

#[test]
fn bundle_without_config() {
    let w = World::new("binc");
    let b = w.bundle("b", |_| {});
    std::fs::remove_file(b.join("config.json")).unwrap();
    create_fails(&w, &b, &w.id("x"), &["config.json"]);
    assert_clean(&w, &[&b]);
}

#[test]
fn malformed_config() {
    let w = World::new("bimf");
    let b = w.bundle("b", |_| {});
    std::fs::write(b.join("config.json"), "{ \"ociVersion\": \"1.2.0\", not json").unwrap();
    create_fails(&w, &b, &w.id("x"), &["config.json"]);
    // Well-formed JSON of the wrong shape names the field too.
    let b2 = w.bundle("b2", |v| v["process"]["args"] = json!("sh"));
    create_fails(&w, &b2, &w.id("y"), &["config.json", "process.args"]);
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn unknown_namespace_type() {
    let w = World::new("bins");
    let b = w.bundle("b", |v| v["linux"]["namespaces"][2]["type"] = "bogus".into());
    create_fails(&w, &b, &w.id("x"), &["linux.namespaces[2].type"]);
    assert_clean(&w, &[&b]);
}

#[test]
fn missing_executable_fails_at_create() {
    let w = World::new("bimx");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["nonexistent-cmd", "arg"]));
    create_fails(&w, &b, &w.id("x"), &["nonexistent-cmd"]);
    assert_clean(&w, &[&b]);
}

#[test]
fn duplicate_id_leaves_the_first_untouched() {
    let w = World::new("bidup");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let b2 = w.bundle("b2", |v| v["process"]["args"] = json!(["sleep", "1001"]));
    let id = w.id("d");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let before = w.state_of(&id);
    let err = w.fails_files(&["create", "--bundle", p(&b2), &id]);
    assert!(err.contains("already exists"), "{err}");
    assert!(procs_rooted_in(&b2.join("rootfs")).is_empty(), "the second create left a process");
    assert_eq!(w.state_of(&id), before, "the first container's state changed");
    let pid = before["pid"].as_i64().unwrap() as i32;
    assert!(pid_alive(pid));
    // It still works.
    w.ok(&["start", &id]);
    assert_eq!(w.state_of(&id)["status"], "running");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(), "sleep\x001000\x00");
    w.ok(&["delete", "--force", &id]);
    wait_pid_gone(pid);
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn ids_with_slash_or_dotdot() {
    let w = World::new("biid");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    for id in ["a/b", "..", "../escape", ".", ""] {
        let err = w.fails_files(&["create", "--bundle", p(&b), id]);
        assert!(err.contains("id"), "{id:?}: {err}");
        assert!(!w.dir.path().join("escape").exists(), "id {id:?} escaped the state root");
        assert!(!w.root.join("a").exists(), "id {id:?} made a directory");
        assert!(procs_rooted_in(&b.join("rootfs")).is_empty(), "id {id:?} left a process");
    }
    assert!(w.containers().is_empty(), "{:?}", w.containers());
    for cmd in ["state", "start", "delete"] {
        let err = w.fails(&[cmd, "../escape"]);
        assert!(err.contains("invalid"), "{cmd}: {err}");
    }
    assert_clean(&w, &[&b]);
}

#[test]
fn start_twice_fails() {
    let w = World::new("bist");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id = w.id("s");
    let pid = create_start(&w, &b, &id);
    let err = w.fails(&["start", &id]);
    assert!(err.contains("running"), "{err}");
    assert_eq!(w.state_of(&id)["status"], "running");
    assert!(pid_alive(pid));
    // A stopped container cannot be started either.
    w.ok(&["kill", &id, "KILL"]);
    wait_until("stopped", || w.state_of(&id)["status"] == "stopped");
    let err = w.fails(&["start", &id]);
    assert!(err.contains("stopped"), "{err}");
    assert_clean(&w, &[&b]);
}

#[test]
fn delete_running_needs_force() {
    let w = World::new("bidl");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id = w.id("r");
    let pid = create_start(&w, &b, &id);
    let err = w.fails(&["delete", &id]);
    assert!(err.contains("running") && err.contains("--force"), "{err}");
    assert!(pid_alive(pid), "a refused delete killed the container");
    assert_eq!(w.state_of(&id)["status"], "running");
    w.ok(&["delete", "--force", &id]);
    wait_pid_gone(pid);
    assert!(!w.root.join(&id).exists());

    // A created (not started) container: delete without --force kills it too (runc does).
    let id2 = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id2]);
    let pid2 = w.state_of(&id2)["pid"].as_i64().unwrap() as i32;
    w.ok(&["delete", &id2]);
    wait_pid_gone(pid2);
    assert_clean(&w, &[&b]);
}

#[test]
fn unknown_id_and_bad_signal() {
    let w = World::new("biun");
    let id = w.id("nope");
    for args in [
        vec!["state", id.as_str()],
        vec!["kill", id.as_str()],
        vec!["delete", id.as_str()],
        vec!["start", id.as_str()],
        vec!["ps", id.as_str()],
        vec!["exec", id.as_str(), "true"],
    ] {
        let err = w.fails(&args);
        assert!(err.contains("does not exist") && err.contains(&id), "{args:?}: {err}");
    }
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id = w.id("s");
    let pid = create_start(&w, &b, &id);
    for sig in ["BOGUS", "SIGNOPE", "99"] {
        let err = w.fails(&["kill", &id, sig]);
        assert!(err.contains("signal"), "{sig}: {err}");
    }
    assert!(pid_alive(pid), "a refused kill signalled the container");
    assert_clean(&w, &[&b]);
}
