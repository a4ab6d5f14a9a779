//! The runtime-spec's MUSTs that runtime-tools checks, each proven with real
//! containers: rootfsPropagation's four modes, namespaces inherited when the
//! config leaves them out, a config without `process`, the state each hook
//! gets on stdin, seccomp filters, and the fields rcon refuses because it
//! cannot apply them (refused at create, nothing left behind).

use std::path::Path;

use serde_json::{json, Value};

use crate::common::{assert_clean, mountinfo_lines, wait_until, World};
use crate::lifecycle::{run, run_ok, sh_bundle};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// A writable root and CAP_SYS_ADMIN, so the container can mount for itself.
fn may_mount(v: &mut Value) {
    v["root"]["readonly"] = false.into();
    for set in ["bounding", "effective", "permitted"] {
        v["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
    }
}

/// runtime-tools' check, inside the container: bind / recursively to
/// /target, then bind a directory under /; is it seen through /target?
/// With an unbindable root the first bind fails.
const PROPAGATION_PROBE: &str = "mkdir -p /target /mnt1 /test && touch /test/f; \
    mount --rbind / /target || { echo bind-refused; exit 0; }; \
    mount --bind /test /mnt1; \
    if [ -e /target/mnt1/f ]; then echo exposed; else echo hidden; fi; \
    awk '$5 == \"/\" {print \"tags:\" $7}' /proc/self/mountinfo";

#[test]
fn rootfs_propagation_modes_apply_to_the_container_root() {
    let w = World::new("smprop");
    for (mode, want) in
        [("shared", "exposed"), ("slave", "hidden"), ("private", "hidden"), ("unbindable", "bind-refused")]
    {
        let b = sh_bundle(&w, mode, PROPAGATION_PROBE, |v| {
            may_mount(v);
            v["linux"]["rootfsPropagation"] = mode.into();
        });
        let out = run_ok(&w, &b, &w.id(mode));
        assert_eq!(out.lines().next(), Some(want), "rootfsPropagation {mode}: {out}");
        match mode {
            "shared" => assert!(out.contains("tags:shared:"), "{out}"),
            "unbindable" => {}
            _ => assert!(!out.contains("shared:"), "{mode} root is shared: {out}"),
        }
        // Nothing the container mounted reached rcon's namespace.
        assert_eq!(mountinfo_lines(&b.join("rootfs")), Vec::<String>::new(), "{mode}");
        assert_clean(&w, &[&b]);
    }
}

#[test]
fn namespaces_the_config_leaves_out_are_inherited() {
    let w = World::new("smns");
    let script = "for n in mnt net pid ipc uts cgroup; do readlink /proc/self/ns/$n; done; \
                  cat /proc/self/mounts | grep -c ' /proc proc '";
    let b = sh_bundle(&w, "b", script, |v| {
        v["linux"]["namespaces"] = json!([]);
        v.as_object_mut().unwrap().remove("hostname");
    });
    let out = run_ok(&w, &b, &w.id("a"));
    let mine: Vec<String> = ["mnt", "net", "pid", "ipc", "uts", "cgroup"]
        .iter()
        .map(|n| std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap().to_string_lossy().into_owned())
        .collect();
    let theirs: Vec<&str> = out.lines().take(6).collect();
    assert_eq!(theirs, mine, "the container did not share rcon's namespaces");
    // Its mounts were made in rcon's mount namespace, under the rootfs; a
    // created container shows them, and delete takes every one away.
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let rootfs = std::fs::canonicalize(b.join("rootfs")).unwrap();
    assert!(mountinfo_lines(&rootfs).len() >= 3, "{:?}", mountinfo_lines(&rootfs));
    w.ok(&["delete", "--force", &id]);
    assert_eq!(mountinfo_lines(&rootfs), Vec::<String>::new());
    assert_clean(&w, &[&b]);
}

#[test]
fn a_config_without_process_is_created_and_refuses_to_start() {
    let w = World::new("smnop");
    let b = w.bundle("b", |v| {
        v.as_object_mut().unwrap().remove("process");
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    assert_eq!(w.state_of(&id)["status"], "created");
    let err = w.fails(&["start", &id]);
    assert!(err.contains("config.json has no process"), "{err}");
    w.ok(&["delete", "--force", &id]);
    assert_clean(&w, &[&b]);
}

#[test]
fn hooks_get_the_state_of_their_stage_on_stdin() {
    let w = World::new("smhk");
    let out = w.dir.path().join("hookout");
    std::fs::create_dir(&out).unwrap();
    let hook = |stage: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{stage}", p(&out))]});
    let b = sh_bundle(&w, "b", "true", |v| {
        v["annotations"] = json!({"org.example.k": "v"});
        v["hooks"] = json!({"prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")],
                            "poststart": [hook("poststart")], "poststop": [hook("poststop")]});
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let pid = w.state_of(&id)["pid"].clone();
    w.ok(&["start", &id]);
    wait_until("the container to stop", || w.state_of(&id)["status"] == "stopped");
    w.ok(&["delete", &id]);
    let bundle = std::fs::canonicalize(&b).unwrap();
    for (stage, status) in
        [("prestart", "created"), ("createRuntime", "creating"), ("poststart", "running"), ("poststop", "stopped")]
    {
        let s: Value = serde_json::from_slice(&std::fs::read(out.join(stage)).unwrap()).unwrap();
        assert_eq!(s["id"], id.as_str(), "{stage}: {s}");
        assert_eq!(s["status"], status, "{stage}: {s}");
        assert_eq!(s["bundle"], p(&bundle), "{stage}: {s}");
        assert_eq!(s["annotations"]["org.example.k"], "v", "{stage}: {s}");
        if stage != "poststop" {
            assert_eq!(s["pid"], pid, "{stage}: {s}");
        }
    }
    assert_clean(&w, &[&b]);
}

#[test]
fn seccomp_filters_confine_the_init_and_exec() {
    let w = World::new("smsc");
    let b = sh_bundle(&w, "b", "mkdir /made-by-init; echo init-rc=$?; sleep 1000", |v| {
        v["root"]["readonly"] = false.into();
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]});
    });
    let id = w.id("c");
    let created = w.ok_files(&["create", "--bundle", p(&b), &id]);
    w.ok(&["start", &id]);
    wait_until("the init to try mkdir", || std::fs::read_to_string(&created.stdout_path).unwrap().contains("init-rc="));
    assert!(std::fs::read_to_string(&created.stdout_path).unwrap().contains("init-rc=1"));
    assert!(!b.join("rootfs/made-by-init").exists());
    let out = w.rcon(&["exec", &id, "mkdir", "/made-by-exec"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    // Everything else is allowed.
    assert_eq!(w.ok(&["exec", &id, "sh", "-c", "touch /f && echo ok"]).trim(), "ok");
    assert_clean(&w, &[&b]);

    let bad = sh_bundle(&w, "bad", "true", |v| {
        v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"});
    });
    let err = w.fails_files(&["create", "--bundle", p(&bad), &w.id("bad")]);
    assert!(err.contains("linux.seccomp.listenerPath"), "{err}");
    assert_clean(&w, &[&bad]);
}

/// Every field rcon cannot apply is refused at create, by name, on one line,
/// with no container, cgroup or mount left; ambient capabilities that the
/// kernel would refuse are skipped with one warning; an unknown capability
/// name is an error before any process runs.
#[test]
fn what_rcon_cannot_apply_is_refused_at_create() {
    let w = World::new("smref");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            // No rdma controller here, in v1 or cgroup2.
            "rdma",
            Box::new(|v| v["linux"]["resources"] = json!({"rdma": {"mlx5_1": {"hcaHandles": 3}}})),
            "linux.resources.rdma",
        ),
        (
            "kmem",
            Box::new(|v| v["linux"]["resources"] = json!({"memory": {"limit": 1 << 26, "kernel": 1 << 20}})),
            "linux.resources.memory.kernel",
        ),
        ("aa", Box::new(|v| v["process"]["apparmorProfile"] = "docker-default".into()), "process.apparmorProfile"),
        (
            "se",
            Box::new(|v| v["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0".into()),
            "process.selinuxLabel",
        ),
        ("pers", Box::new(|v| v["linux"]["personality"] = json!({"domain": "LINUX32"})), "linux.personality"),
        ("sd", Box::new(|v| v["linux"]["cgroupsPath"] = "system.slice:rcon:x".into()), "linux.cgroupsPath"),
        (
            "cap",
            Box::new(|v| v["process"]["capabilities"]["bounding"] = json!(["CAP_NOPE"])),
            "process.capabilities.bounding[0]",
        ),
    ];
    for (tag, edit, field) in cases {
        let b = sh_bundle(&w, tag, "true", |v| edit(v));
        let err = w.fails_files(&["create", "--bundle", p(&b), &w.id(tag)]);
        assert!(err.contains(field), "{tag}: {err}");
        assert!(w.containers().is_empty(), "{tag}: a container was left");
        assert!(!Path::new(&format!("/sys/fs/cgroup/unified/rcon/{}", w.id(tag))).exists(), "{tag}: cgroup left");
        assert_clean(&w, &[&b]);
    }
    let b = sh_bundle(&w, "amb", "grep CapAmb /proc/self/status", |v| {
        v["process"]["capabilities"]["ambient"] = json!(["CAP_KILL", "CAP_CHOWN"]);
        v["process"]["capabilities"]["inheritable"] = json!(["CAP_KILL"]);
    });
    let (code, out, err) = run(&w, &b, &w.id("amb"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "CapAmb:\t0000000000000020", "only CAP_KILL (bit 5) is raised");
    let warns: Vec<&str> = err.lines().filter(|l| l.contains("ambient")).collect();
    assert_eq!(warns.len(), 1, "{err}");
    assert!(warns[0].contains("CAP_CHOWN") && !warns[0].contains("CAP_KILL"), "{err}");
    assert_clean(&w, &[&b]);
}

/// `linux.resources.pids.limit` through the v1 pids controller, with a
/// limit of 4. Every `exec` needs two slots while it starts (rcon's
/// intermediate process and the process itself) and keeps one, so after the
/// init and two detached sleeps (3 in the group) a third exec is refused with
/// the kernel's EAGAIN, and the group counts the refusal. Delete removes it.
#[test]
fn pids_limit_caps_the_container() {
    let w = World::new("smpid");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["linux"]["resources"] = json!({"pids": {"limit": 4}});
        v["linux"]["cgroupsPath"] = format!("/rcon-test/{}", w.name).into();
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let group = std::path::PathBuf::from(format!("/sys/fs/cgroup/pids/rcon-test/{}", w.name));
    let read = |f: &str| std::fs::read_to_string(group.join(f)).unwrap().trim().to_string();
    assert_eq!(read("pids.max"), "4");
    w.ok(&["start", &id]);
    for _ in 0..2 {
        w.ok_files(&["exec", "-d", &id, "sleep", "100"]);
    }
    wait_until("the detached execs' intermediates to exit", || read("pids.current") == "3");
    assert_eq!(read("pids.events"), "max 0");
    let err = w.fails(&["exec", &id, "true"]);
    assert!(err.contains("EAGAIN"), "{err}");
    assert_eq!(read("pids.events"), "max 1", "the group did not count the refused fork");
    assert_eq!(read("pids.current"), "3");
    w.ok(&["delete", "--force", &id]);
    assert!(!group.exists(), "delete left {}", group.display());
    let _ = std::fs::remove_dir(group.parent().unwrap());
    assert_clean(&w, &[&b]);
}
