//! The OCI lifecycle with real container processes: create/start/kill/delete,
//! run's exit status, signals, list/ps, exec, and what config.json's process
//! and linux sections do to the process that runs.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::{
    assert_clean, new_netns_default, pid_alive, procs_rooted_in, sh, wait_pid_gone, wait_until, World,
};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// A bundle whose process is `sh -c SCRIPT`, adjusted further by `edit`.
pub fn sh_bundle(w: &World, name: &str, script: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    w.bundle(name, |v| {
        v["process"]["args"] = json!(["sh", "-c", script]);
        edit(v)
    })
}

/// `rcon run` in the foreground: (exit code, stdout, stderr).
pub fn run(w: &World, b: &Path, id: &str) -> (i32, String, String) {
    let out = w.rcon(&["run", "--bundle", p(b), id]);
    let code = out.status.code().expect("rcon run killed by a signal");
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Foreground run that must exit 0; returns stdout.
pub fn run_ok(w: &World, b: &Path, id: &str) -> String {
    let (code, out, err) = run(w, b, id);
    assert_eq!(code, 0, "container {id} exited {code}: stdout {out:?} stderr {err:?}");
    out
}

fn status(w: &World, id: &str) -> String {
    w.state_of(id)["status"].as_str().unwrap().to_string()
}

fn pid_of(w: &World, id: &str) -> i32 {
    w.state_of(id)["pid"].as_i64().unwrap() as i32
}

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
        .trim_end()
        .to_string()
}

/// create + start a container in the background (stdio to files).
pub fn create_start(w: &World, b: &Path, id: &str) -> i32 {
    w.ok_files(&["create", "--bundle", p(b), id]);
    w.ok(&["start", id]);
    pid_of(w, id)
}

fn rootfs_file(b: &Path, name: &str) -> PathBuf {
    b.join("rootfs").join(name.trim_start_matches('/'))
}

fn wait_file(path: &Path) -> String {
    wait_until(&format!("{} to appear", path.display()), || std::fs::read_to_string(path).is_ok_and(|s| !s.is_empty()));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn status_transitions_created_running_stopped() {
    let w = World::new("lcst");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id = w.id("c");
    let pid_file = w.dir.path().join("c.pid");

    w.ok_files(&["create", "--bundle", p(&b), "--pid-file", p(&pid_file), &id]);
    let st = w.state_of(&id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    assert!(st["ociVersion"].as_str().is_some_and(|s| !s.is_empty()), "{st}");
    assert_eq!(st["bundle"], p(&std::fs::canonicalize(&b).unwrap()), "{st}");
    assert!(st["annotations"].is_object(), "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid > 1, "{st}");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid.to_string(), "pid file differs from state pid");
    assert!(pid_alive(pid), "created container's init {pid} is not running");
    // The leftover-process check of assert_clean finds this very process.
    assert_eq!(procs_rooted_in(&b.join("rootfs")), vec![pid]);
    // Created: the user process has not been exec'd yet.
    assert!(!cmdline(pid).starts_with("sleep"), "process ran before start: {}", cmdline(pid));

    w.ok(&["start", &id]);
    assert_eq!(status(&w, &id), "running");
    assert_eq!(pid_of(&w, &id), pid, "pid changed on start");
    assert_eq!(cmdline(pid), "sleep 1000", "the init did not become the user process");

    w.ok(&["kill", &id, "KILL"]);
    wait_until("status stopped", || status(&w, &id) == "stopped");
    assert!(!pid_alive(pid));

    w.ok(&["delete", &id]);
    let err = w.fails(&["state", &id]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!w.root.join(&id).exists(), "state dir left after delete");
    assert!(!w.ok(&["list", "-q"]).lines().any(|l| l == id));
    assert_clean(&w, &[&b]);
}

#[test]
fn run_propagates_exit_status() {
    let w = World::new("lcex");
    let b0 = sh_bundle(&w, "b0", "exit 0", |_| {});
    let b7 = sh_bundle(&w, "b7", "exit 7", |_| {});
    // Without a pid namespace sh is not an init, so it can SIGKILL itself.
    let b9 = sh_bundle(&w, "b9", "kill -9 $$; echo survived", |v| {
        let ns: Vec<Value> =
            v["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != "pid").cloned().collect();
        v["linux"]["namespaces"] = json!(ns);
    });
    let (code, _, err) = run(&w, &b0, &w.id("e0"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&w, &b7, &w.id("e7"));
    assert_eq!(code, 7, "{err}");
    let (code, out, err) = run(&w, &b9, &w.id("e9"));
    assert_eq!(code, 137, "kill -9 $$: {out}{err}");
    assert!(!out.contains("survived"));
    // A foreground run removes its container.
    assert!(w.containers().is_empty(), "left: {:?}", w.containers());
    assert_clean(&w, &[&b0, &b7, &b9]);
}

#[test]
fn run_killed_from_outside_is_137() {
    let w = World::new("lcek");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id = w.id("k");
    let io = w.dir.path().join("run.out");
    let mut child = w
        .cmd(&["run", "--bundle", p(&b), &id])
        .stdout(std::fs::File::create(&io).unwrap())
        .stderr(std::fs::File::create(w.dir.path().join("run.err")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the container to run", || {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("run exited early ({st}): {}", std::fs::read_to_string(w.dir.path().join("run.err")).unwrap());
        }
        w.rcon(&["state", &id]).status.success() && status(&w, &id) == "running"
    });
    let pid = pid_of(&w, &id);
    w.ok(&["kill", &id, "KILL"]);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137), "run exit status");
    assert!(!pid_alive(pid));
    assert!(w.containers().is_empty(), "foreground run left {:?}", w.containers());
    assert_clean(&w, &[&b]);
}

#[test]
fn run_detach_returns_while_container_runs() {
    let w = World::new("lcdt");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id = w.id("d");
    let out = w.ok_files(&["run", "--detach", "--bundle", p(&b), &id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(status(&w, &id), "running");
    let pid = pid_of(&w, &id);
    assert!(pid_alive(pid));
    assert_eq!(cmdline(pid), "sleep 1000");
    w.ok(&["delete", "--force", &id]);
    wait_pid_gone(pid);
    assert_clean(&w, &[&b]);
}

/// A shell init that records the signals it gets in files of its rootfs.
const TRAPPER: &str = "trap 'echo usr1 >> /got-usr1' USR1; trap 'echo term > /got-term; exit 0' TERM; \
                       echo ready > /ready; while :; do sleep 1000 & wait $!; done";

#[test]
fn kill_by_name_and_number() {
    let w = World::new("lckl");
    let b = sh_bundle(&w, "trap", TRAPPER, |v| v["root"]["readonly"] = false.into());
    let id = w.id("t");
    let pid = create_start(&w, &b, &id);
    wait_file(&rootfs_file(&b, "ready"));

    w.ok(&["kill", &id, "SIGUSR1"]);
    assert_eq!(wait_file(&rootfs_file(&b, "got-usr1")).trim(), "usr1");
    assert_eq!(status(&w, &id), "running", "USR1 is trapped: the container must keep running");
    assert!(!rootfs_file(&b, "got-term").exists());

    w.ok(&["kill", &id, "TERM"]);
    assert_eq!(wait_file(&rootfs_file(&b, "got-term")).trim(), "term");
    wait_until("status stopped after TERM", || status(&w, &id) == "stopped");
    assert!(!pid_alive(pid));
    w.ok(&["delete", &id]);

    // By number: 9 is SIGKILL, which even a pid-namespace init cannot ignore.
    let b2 = w.bundle("sleep", |v| v["process"]["args"] = json!(["sleep", "1000"]));
    let id2 = w.id("n");
    let pid2 = create_start(&w, &b2, &id2);
    w.ok(&["kill", &id2, "9"]);
    wait_until("status stopped after 9", || status(&w, &id2) == "stopped");
    assert!(!pid_alive(pid2));
    w.ok(&["delete", &id2]);
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn kill_all_reaches_children() {
    let w = World::new("lcka");
    // No pid namespace: the child does not die with the init by itself.
    let script = "sleep 1000 & echo $! > /child.pid; wait";
    let no_pidns = |v: &mut Value| {
        v["root"]["readonly"] = false.into();
        let ns: Vec<Value> =
            v["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != "pid").cloned().collect();
        v["linux"]["namespaces"] = json!(ns);
    };
    let b = sh_bundle(&w, "all", script, no_pidns);
    let id = w.id("a");
    let pid = create_start(&w, &b, &id);
    let child: i32 = wait_file(&rootfs_file(&b, "child.pid")).trim().parse().unwrap();
    assert!(pid_alive(child) && pid_alive(pid));
    w.ok(&["kill", "--all", &id, "KILL"]);
    wait_pid_gone(pid);
    wait_pid_gone(child);

    // Control: without --all only the init gets the signal, the child survives.
    let b2 = sh_bundle(&w, "one", script, no_pidns);
    let id2 = w.id("o");
    let pid2 = create_start(&w, &b2, &id2);
    let child2: i32 = wait_file(&rootfs_file(&b2, "child.pid")).trim().parse().unwrap();
    w.ok(&["kill", &id2, "KILL"]);
    wait_pid_gone(pid2);
    let survived = pid_alive(child2);
    // Only signal it while it is known alive: a dead pid may already belong to another test.
    if survived {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child2), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(survived, "without --all the child should not have been signalled");
    wait_pid_gone(child2);
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn list_and_ps_show_the_container() {
    let w = World::new("lcls");
    let b = sh_bundle(&w, "b", "sleep 1001 & wait", |_| {});
    let id = w.id("l");
    let pid = create_start(&w, &b, &id);

    let table = w.ok(&["list"]);
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))
        .unwrap_or_else(|| panic!("{id} not in:\n{table}"));
    assert!(row.contains("running") && row.contains(&pid.to_string()), "{row}");
    assert!(w.ok(&["list", "-q"]).lines().any(|l| l == id));
    let all: Value = serde_json::from_str(&w.ok(&["list", "--format", "json"])).unwrap();
    let me =
        all.as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not in {all}"));
    assert_eq!(me["status"], "running");
    assert_eq!(me["pid"], pid);

    let mut pids: Vec<i32> = Vec::new();
    // The child is listed from its fork on, but is `sleep` only once it has exec'd.
    wait_until("ps to list the child running sleep", || {
        pids = serde_json::from_str(&w.ok(&["ps", "--format", "json", &id])).unwrap();
        pids.len() >= 2 && pids[1..].iter().any(|&c| cmdline(c) == "sleep 1001")
    });
    assert_eq!(pids[0], pid, "ps lists the init first: {pids:?}");

    w.ok(&["delete", "--force", &id]);
    for c in pids {
        wait_pid_gone(c);
    }
    assert!(!w.ok(&["list", "-q"]).lines().any(|l| l == id));
    assert_clean(&w, &[&b]);
}

#[test]
fn exec_runs_in_the_container() {
    let w = World::new("lcxc");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["hostname"] = "rt-exec-host".into();
    });
    std::fs::write(rootfs_file(&b, "marker"), "only-in-this-rootfs\n").unwrap();
    let id = w.id("x");
    let pid = create_start(&w, &b, &id);

    assert_eq!(w.ok(&["exec", &id, "hostname"]).trim(), "rt-exec-host");
    assert_eq!(w.ok(&["exec", &id, "cat", "/marker"]).trim(), "only-in-this-rootfs");
    let theirs = w.ok(&["exec", &id, "readlink", "/proc/self/ns/net"]);
    let init = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(theirs.trim(), init.to_str().unwrap(), "exec is not in the init's netns");
    assert_ne!(init, host);
    // Same pid namespace: the init is pid 1 there.
    assert_eq!(w.ok(&["exec", &id, "cat", "/proc/1/cmdline"]).replace('\0', " ").trim(), "sleep 1000");

    // Exit status.
    let out = w.rcon(&["exec", &id, "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let out = w.rcon(&["exec", &id, "sh", "-c", "exit 0"]);
    assert_eq!(out.status.code(), Some(0));

    // -e, --cwd, -u.
    let out = w.ok(&[
        "exec",
        "-e",
        "RT_FOO=baz",
        "--cwd",
        "/etc",
        "-u",
        "1000:1002",
        &id,
        "sh",
        "-c",
        "echo $RT_FOO; pwd; id -u; id -g",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["baz", "/etc", "1000", "1002"]);

    // --process FILE.
    let proc_file = w.dir.path().join("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo $RT_P; pwd; exit 4"],
        "env": ["PATH=/bin", "RT_P=from-process-file"],
        "cwd": "/tmp"
    });
    std::fs::write(&proc_file, process.to_string()).unwrap();
    let out = w.rcon(&["exec", "--process", p(&proc_file), &id]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), ["from-process-file", "/tmp"]);

    // -d with --pid-file: returns, the process keeps running in the container.
    let xpid_file = w.dir.path().join("exec.pid");
    w.ok_files(&["exec", "-d", "--pid-file", p(&xpid_file), &id, "sleep", "1002"]);
    let xpid: i32 = std::fs::read_to_string(&xpid_file).unwrap().trim().parse().unwrap();
    assert!(pid_alive(xpid));
    assert_eq!(cmdline(xpid), "sleep 1002");
    assert_eq!(
        std::fs::read_link(format!("/proc/{xpid}/ns/pid")).unwrap(),
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap()
    );

    // exec on a stopped container is refused.
    w.ok(&["kill", &id, "KILL"]);
    wait_until("stopped", || status(&w, &id) == "stopped");
    wait_pid_gone(xpid);
    let err = w.fails(&["exec", &id, "true"]);
    assert!(err.contains("running"), "{err}");
    assert_clean(&w, &[&b]);
}

#[test]
fn process_env_cwd_hostname_user() {
    let w = World::new("lcpr");
    let b = sh_bundle(&w, "b", "echo $RT_ENV; pwd; hostname; id; id -u; id -g; id -G", |v| {
        v["process"]["env"].as_array_mut().unwrap().push("RT_ENV=hello-env".into());
        v["process"]["cwd"] = "/tmp".into();
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1001]});
        v["hostname"] = "rt-host-x".into();
    });
    let out = run_ok(&w, &b, &w.id("p"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["hello-env", "/tmp", "rt-host-x", "uid=1000 gid=1000 groups=1001", "1000", "1000", "1000 1001"],
        "{out}"
    );
    assert_ne!(sh("hostname").trim(), "rt-host-x");
    assert_clean(&w, &[&b]);
}

fn cap_eff(out: &str) -> u64 {
    let l = out.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_else(|| panic!("no CapEff in {out}"));
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn capabilities_are_applied() {
    let w = World::new("lccp");
    let script = "grep CapEff /proc/self/status; ip link set lo down && echo lo-down-ok";
    let none = sh_bundle(&w, "none", script, |v| {
        v["process"]["capabilities"] =
            json!({"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []});
    });
    let default = sh_bundle(&w, "default", script, |_| {});
    let admin = sh_bundle(&w, "admin", script, |v| {
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_NET_ADMIN".into());
        }
    });
    let (_, out, err) = run(&w, &none, &w.id("n"));
    assert_eq!(cap_eff(&format!("{out}{err}")), 0, "{out}");
    assert!(!out.contains("lo-down-ok"), "no capabilities but `ip link set lo down` worked");
    assert!(err.contains("not permitted"), "{err}");

    let (_, out, err) = run(&w, &default, &w.id("d"));
    let eff = cap_eff(&format!("{out}{err}"));
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29).
    assert_eq!(eff, (1 << 5) | (1 << 10) | (1 << 29), "{out}");
    assert!(!out.contains("lo-down-ok"), "default set has no CAP_NET_ADMIN");

    let out = run_ok(&w, &admin, &w.id("a"));
    assert_ne!(cap_eff(&out) & (1 << 12), 0, "{out}");
    assert!(out.contains("lo-down-ok"), "CAP_NET_ADMIN given but `ip link set lo down` failed: {out}");
    assert_clean(&w, &[&none, &default, &admin]);
}

#[test]
fn rlimits_and_no_new_privileges() {
    let w = World::new("lcrl");
    let script = "ulimit -n; ulimit -Hn; grep NoNewPrivs /proc/self/status";
    let b = sh_bundle(&w, "b", script, |v| {
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2345}]);
        v["process"]["noNewPrivileges"] = true.into();
    });
    let out = run_ok(&w, &b, &w.id("r"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1234", "{out}");
    assert_eq!(lines[1], "2345", "{out}");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "1"], "{out}");

    let b2 = sh_bundle(&w, "b2", script, |v| v["process"]["noNewPrivileges"] = false.into());
    let out = run_ok(&w, &b2, &w.id("r2"));
    assert!(out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NoNewPrivs:", "0"]), "{out}");
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn masked_and_readonly_paths() {
    let w = World::new("lcmk");
    // /proc/kcore is not on every kernel; /proc/timer_list and /sys/firmware are masked too.
    let script =
        "for f in /proc/kcore /proc/timer_list; do [ -e $f ] && echo $f $(stat -c %F $f) $(cat $f | wc -c); done; \
                  echo firmware $(ls /sys/firmware | wc -l); \
                  echo rt > /proc/sys/kernel/domainname && echo write-ok; cat /proc/sys/kernel/domainname";
    let b = sh_bundle(&w, "masked", script, |_| {});
    let (_, out, err) = run(&w, &b, &w.id("m"));
    let timer = out.lines().find(|l| l.starts_with("/proc/timer_list")).unwrap_or_else(|| panic!("{out}{err}"));
    assert_eq!(timer, "/proc/timer_list character special file 0", "{out}");
    if let Some(kcore) = out.lines().find(|l| l.starts_with("/proc/kcore")) {
        assert!(kcore.ends_with(" 0"), "{kcore}");
    }
    assert!(out.lines().any(|l| l == "firmware 0"), "{out}");
    assert!(!out.contains("write-ok"), "/proc/sys is writable: {out}");
    assert!(err.contains("Read-only file system"), "{err}");

    // Control: the same process without masked and read-only paths.
    let b2 = sh_bundle(&w, "open", script, |v| {
        v["linux"]["maskedPaths"] = json!([]);
        v["linux"]["readonlyPaths"] = json!([]);
    });
    let (_, out, err) = run(&w, &b2, &w.id("o"));
    let timer = out.lines().find(|l| l.starts_with("/proc/timer_list")).unwrap_or_else(|| panic!("{out}{err}"));
    assert!(timer.starts_with("/proc/timer_list regular") && !timer.ends_with(" 0"), "{timer}");
    assert!(out.contains("write-ok") && out.lines().any(|l| l == "rt"), "{out}{err}");
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn readonly_root() {
    let w = World::new("lcro");
    let script = "touch /x && echo touched";
    let ro = sh_bundle(&w, "ro", script, |v| v["root"]["readonly"] = true.into());
    let (code, out, err) = run(&w, &ro, &w.id("ro"));
    assert_ne!(code, 0);
    assert!(!out.contains("touched") && err.contains("Read-only file system"), "{out}{err}");
    assert!(!rootfs_file(&ro, "x").exists());
    let rw = sh_bundle(&w, "rw", script, |v| v["root"]["readonly"] = false.into());
    assert!(run_ok(&w, &rw, &w.id("rw")).contains("touched"));
    assert!(rootfs_file(&rw, "x").exists(), "file written in the container is not in the bundle's rootfs");
    assert_clean(&w, &[&ro, &rw]);
}

#[test]
fn sysctl_is_set_in_the_container_only() {
    let w = World::new("lcsy");
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    // The container's new netns copies ip_forward from the root namespace (1 on a Docker host: see
    // "Test worlds and host sysctls" in common/mod.rs), so the sysctl asks for the other value.
    let fresh = new_netns_default("net.ipv4.ip_forward");
    let want = if fresh == "1" { "0" } else { "1" };
    let b = sh_bundle(&w, "b", "cat /proc/sys/net/ipv4/ip_forward", |v| {
        v["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": want });
    });
    assert_eq!(run_ok(&w, &b, &w.id("s")).trim(), want);
    // Control: without the sysctl the container has what any new netns starts with.
    let b2 = sh_bundle(&w, "b2", "cat /proc/sys/net/ipv4/ip_forward", |_| {});
    assert_eq!(run_ok(&w, &b2, &w.id("s2")).trim(), fresh);
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host_before, "host sysctl changed");
    assert_clean(&w, &[&b, &b2]);
}

#[test]
fn mounts_tmpfs_and_bind() {
    let w = World::new("lcmt");
    let host_dir = w.dir.path().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello"), "from-the-host\n").unwrap();
    let script =
        "grep ' /data ' /proc/mounts | cut -d' ' -f3; echo x > /data/f && echo data-writable; cat /hostdir/hello; \
                  touch /hostdir/y && echo bind-writable; echo done";
    let b = sh_bundle(&w, "b", script, |v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}),
        );
        mounts.push(json!({"destination": "/hostdir", "type": "bind", "source": host_dir, "options": ["rbind", "ro"]}));
    });
    let (_, out, err) = run(&w, &b, &w.id("m"));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["tmpfs", "data-writable", "from-the-host", "done"], "{out}{err}");
    assert!(err.contains("Read-only"), "ro bind mount was writable: {err}");
    assert!(!host_dir.join("y").exists());
    assert!(!rootfs_file(&b, "data/f").exists(), "the tmpfs write reached the bundle");
    assert_clean(&w, &[&b]);
}

#[test]
fn concurrent_creates_all_succeed() {
    let w = World::new("lcrace");
    let b = w.bundle("b", |v| v["process"]["args"] = json!(["true"]));
    let kids: Vec<(String, std::process::Child)> = (0..24)
        .map(|i| {
            let id = w.id(&format!("r{i}"));
            let child = w.cmd(&["run", "--bundle", p(&b), &id]).stderr(std::process::Stdio::piped()).spawn().unwrap();
            (id, child)
        })
        .collect();
    let failed: Vec<String> = kids
        .into_iter()
        .filter_map(|(id, c)| {
            let out = c.wait_with_output().unwrap();
            (!out.status.success()).then(|| format!("{id}: {}", String::from_utf8_lossy(&out.stderr).trim()))
        })
        .collect();
    assert!(failed.is_empty(), "{} of 24 concurrent runs failed: {failed:#?}", failed.len());
    assert_clean(&w, &[&b]);
}

#[test]
fn delete_leaves_no_child_without_pid_ns() {
    let w = World::new("lcorph");
    let b = sh_bundle(&w, "b", "sleep 1000 & echo $! > /child.pid; wait", |v| {
        v["root"]["readonly"] = false.into();
        let ns: Vec<Value> =
            v["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != "pid").cloned().collect();
        v["linux"]["namespaces"] = json!(ns);
    });
    let id = w.id("o");
    let pid = create_start(&w, &b, &id);
    let child: i32 = wait_file(&rootfs_file(&b, "child.pid")).trim().parse().unwrap();
    w.ok(&["kill", &id, "KILL"]);
    wait_pid_gone(pid);
    w.ok(&["delete", &id]);
    let left = pid_alive(child);
    if left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(!left, "container child {child} survived delete");
    assert_clean(&w, &[&b]);
}
