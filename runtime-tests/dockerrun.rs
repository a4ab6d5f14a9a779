//! Docker-style `rcon run IMAGE`: every option, exit statuses, detached
//! containers with logs, stop and rm, --rm, names, exec by name, and an
//! interactive shell driven through tmux, as a person would use it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{sh, unique, wait_until, World};

/// The busybox OCI layout that hack/mkimage.sh builds.
fn busybox_layout() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/.cache/busybox-oci");
    assert!(p.join("index.json").exists(), "no busybox image at {}: run hack/mkimage.sh (make test does)", p.display());
    p
}

/// A world whose rcon runs in its own node netns: `run` attaches the default
/// bridge network, which must never land in the machine's namespace.
pub(crate) fn world_with_busybox(tag: &str) -> World {
    let w = World::with_node(tag);
    w.ok(&["image", "import", busybox_layout().to_str().unwrap(), "busybox"]);
    w
}

/// Nothing of the engine's is left: no state, no overlay, no data dir, no name, no log, no cgroup.
pub(crate) fn assert_nothing_left(w: &World, id: &str) {
    assert!(!w.root.join(id).exists(), "state dir of {id} left");
    let data = w.data_root.join("containers").join(id);
    assert!(!data.exists(), "data dir {} left", data.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(id), "a mount of {id} left");
    let names = std::fs::read_dir(w.root.join(".names")).map(|rd| rd.count()).unwrap_or(0);
    assert_eq!(names, 0, "a name reservation left");
    assert!(!w.root.join(".logs").join(format!("{id}.log")).exists(), "log left");
    assert!(!Path::new("/sys/fs/cgroup/unified/rcon").join(id).exists(), "cgroup left");
}

/// The `ps --format json` row of the container called `name`, if it exists.
fn ps_row(w: &World, name: &str) -> Option<serde_json::Value> {
    let rows: serde_json::Value = serde_json::from_str(&w.ok(&["ps", "--format", "json"])).unwrap();
    rows.as_array().unwrap().iter().find(|r| r["name"] == name).cloned()
}

fn is_running(w: &World, name: &str) -> bool {
    ps_row(w, name).is_some_and(|r| r["status"] == "running")
}

fn run(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = w.rcon(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn run_applies_every_option_and_propagates_exit_status() {
    let w = world_with_busybox("drop");
    let script = "echo A=$A; hostname; pwd; id -u; id -g; cat /etc/hostname; exit 7";
    let (code, out, err) = run(
        &w,
        &[
            "run",
            "--rm",
            "--name",
            "opts",
            "-e",
            "A=1",
            "--hostname",
            "hh",
            "-w",
            "/tmp",
            "-u",
            "1000:1001",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 7, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["A=1", "hh", "/tmp", "1000", "1001", "hh"], "{err}");
    // Killed by a signal: 128+N. (A pid-1 shell cannot SIGKILL itself, so the kill comes from outside.)
    let child = w.cmd(&["run", "--rm", "--name", "victim", "busybox", "sleep", "1000"]).spawn().unwrap();
    wait_until("the victim to run", || is_running(&w, "victim"));
    w.ok(&["kill", "victim", "KILL"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    // The image's Cmd (sh) runs when no command is given; with stdin at EOF it exits 0.
    let (code, _, err) = run(&w, &["run", "--rm", "busybox"]);
    assert_eq!(code, 0, "{err}");
    assert!(w.containers().iter().all(|c| c.starts_with('.')), "--rm left {:?}", w.containers());
}

#[test]
fn network_modes() {
    let w = world_with_busybox("drnet");
    // none: a fresh netns holding only lo.
    let out = w.ok(&["run", "--rm", "--net", "none", "busybox", "ip", "-o", "link"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(": lo:"), "{out}");
    // host: the same netns as rcon itself, the world's node.
    use std::os::unix::fs::MetadataExt;
    let node = format!("/var/run/netns/{}", w.node.as_ref().unwrap());
    let host_ns = format!("net:[{}]", std::fs::metadata(&node).unwrap().ino());
    let out = w.ok(&["run", "--rm", "--net", "host", "busybox", "readlink", "/proc/self/ns/net"]);
    assert_eq!(out.trim(), host_ns);
    // ns:PATH: a named namespace of this world, holding a veth pair.
    let ns = unique("drn");
    w.ok(&["netns", "add", &ns]);
    let nsfile = w.netns_dir.join(&ns);
    sh(&format!("nsenter --net={} ip link add drv0 type veth peer name drv1", nsfile.display()));
    let out = w.ok(&["run", "--rm", "--net", &format!("ns:{}", nsfile.display()), "busybox", "ip", "-o", "link"]);
    assert!(out.contains("drv0") && out.contains("drv1"), "{out}");
    // container:NAME: the other container's netns, same inode.
    let id = w.ok(&["run", "-d", "--name", "holder", "busybox", "sleep", "1000"]).trim().to_string();
    let pid = w.state_of(&id)["pid"].as_i64().unwrap();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let out = w.ok(&["run", "--rm", "--net", "container:holder", "busybox", "readlink", "/proc/self/ns/net"]);
    assert_eq!(out.trim(), theirs.to_str().unwrap());
    let err = w.fails(&["run", "--rm", "--net", "bogus", "busybox", "true"]);
    assert!(err.contains("bogus") && err.contains("does not exist"), "{err}");
    w.ok(&["rm", "-f", "holder"]);
    assert_nothing_left(&w, &id);
}

#[test]
fn detached_logs_ps_stop_rm() {
    let w = world_with_busybox("drdet");
    let id = w.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo hello-log; echo to-err >&2; exec sleep 1000",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the id: {id:?}");
    wait_until("the log to fill", || w.ok(&["logs", "talker"]).contains("to-err"));
    assert!(w.ok(&["logs", "talker"]).contains("hello-log"));
    let ps = w.ok(&["ps"]);
    let row = ps.lines().find(|l| l.contains("talker")).unwrap_or_else(|| panic!("{ps}"));
    assert!(row.starts_with(&id[..12]) && row.contains("busybox:latest") && row.contains("running"), "{row}");
    let json: serde_json::Value = serde_json::from_str(&w.ok(&["ps", "--format", "json"])).unwrap();
    let me = json.as_array().unwrap().iter().find(|r| r["name"] == "talker").unwrap();
    assert_eq!(me["image"], "busybox:latest");
    assert!(me["command"].as_str().unwrap().contains("sleep 1000"));
    // `ps -q`, as docker users type it: the short ids, which name the container.
    assert_eq!(w.ok(&["ps", "-q"]).lines().collect::<Vec<_>>(), [&id[..12]]);
    let pid = w.state_of(&id)["pid"].as_i64().unwrap();
    assert_eq!(w.ok(&["ps", "-q", &id]).lines().next(), Some(pid.to_string().as_str()));
    // exec by name shares the init's netns.
    let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(w.ok(&["exec", "talker", "readlink", "/proc/self/ns/net"]).trim(), init_ns.to_str().unwrap());
    // rm refuses a running container; stop then rm works.
    assert!(w.fails(&["rm", "talker"]).contains("running"));
    w.ok(&["stop", "-t", "1", "talker"]);
    wait_until("ps to show it exited", || {
        w.ok(&["ps"]).lines().any(|l| l.contains("talker") && l.contains("exited ("))
    });
    w.ok(&["rm", "talker"]);
    assert_nothing_left(&w, &id);
}

/// `rm -f` killed after it killed the container's processes (issue 17):
/// a running delete is left alone by gc, a dead one is finished by gc alone.
#[test]
fn gc_finishes_a_killed_rm() {
    let w = world_with_busybox("drkrm");
    let id = w.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_string();
    let pid = w.state_of(&id)["pid"].as_i64().unwrap() as i32;
    let out = w.cmd(&["rm", "-f", &id]).env("RCON_FAULT", "delete:killed").output().unwrap();
    assert_eq!(out.status.code(), None, "rm should have been killed: {out:?}");
    crate::common::wait_pid_gone(pid);
    assert!(w.root.join(&id).exists(), "the killed rm got further than its fault point");
    let gc = w.ok(&["gc"]);
    assert!(gc.contains(&id), "gc did not say it removed {id}: {gc}");
    assert_nothing_left(&w, &id);
}

#[test]
fn rm_rf_running_and_detached_rm_leave_nothing() {
    let w = world_with_busybox("drrm");
    let id = w.ok(&["run", "-d", "busybox", "sleep", "1000"]).trim().to_string();
    let pid = w.state_of(&id)["pid"].as_i64().unwrap() as i32;
    w.ok(&["rm", "-f", &id[..12]]);
    crate::common::wait_pid_gone(pid);
    assert_nothing_left(&w, &id);
    // -d --rm: the monitor removes it when it exits by itself.
    let id = w.ok(&["run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.2"]).trim().to_string();
    wait_until("the -d --rm container to be removed", || !w.data_root.join("containers").join(&id).exists());
    assert_nothing_left(&w, &id);
}

#[test]
fn names_are_unique_and_bad_input_is_refused() {
    let w = world_with_busybox("drbad");
    let id = w.ok(&["run", "-d", "--name", "dup", "busybox", "sleep", "1000"]).trim().to_string();
    let err = w.fails(&["run", "--name", "dup", "busybox", "true"]);
    assert!(err.contains("already in use"), "{err}");
    let err = w.fails(&["run", "--rm", "nosuchimage", "true"]);
    assert!(err.contains("nosuchimage") && err.contains("busybox"), "the error should name the known images: {err}");
    let err = w.fails(&["run", "--rm", "busybox", "no-such-command"]);
    assert!(err.contains("no-such-command"), "{err}");
    assert!(w.fails(&["run", "--name", "a/b", "busybox", "true"]).contains("a/b"));
    w.ok(&["rm", "-f", "dup"]);
    assert_nothing_left(&w, &id);
    // Only the failed runs' nothing is left either.
    assert_eq!(std::fs::read_dir(w.data_root.join("containers")).map(|r| r.count()).unwrap_or(0), 0);
}

/// A shell command prefix that runs this world's rcon in its node, for tmux.
fn shell_rcon(w: &World) -> String {
    format!(
        "RCON_ROOT={} RCON_DATA_ROOT={} RCON_NETNS_DIR={} nsenter --net=/var/run/netns/{} {}",
        w.root.display(),
        w.data_root.display(),
        w.netns_dir.display(),
        w.node.as_ref().unwrap(),
        crate::common::rcon_bin(),
    )
}

/// `rcon run -it busybox sh` in tmux: type, read the screen, check the exit status.
#[test]
fn interactive_shell_in_tmux() {
    let w = world_with_busybox("drtty");
    let session = unique("tmux");
    let status = w.dir.path().join("status");
    let cmd = format!(
        "{} run -it --rm --name tty --hostname ttyhost busybox sh; echo $? > {}",
        shell_rcon(&w),
        status.display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "40", &cmd]).status.success());
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
    wait_until("the shell prompt", || screen().contains("/ #"));
    tmux(&["send-keys", "-t", &session, "hostname; ip link; stty size", "Enter"]);
    wait_until("the command output", || screen().contains("40 120"));
    let shown = screen();
    assert!(shown.contains("ttyhost") && shown.contains("lo:") && shown.contains("eth0@"), "{shown}");
    // A resized window reaches the container (SIGWINCH).
    tmux(&["resize-window", "-t", &session, "-x", "90", "-y", "25"]);
    tmux(&["send-keys", "-t", &session, "clear; stty size", "Enter"]);
    wait_until("the new window size", || screen().contains("25 90"));
    // The control keys wait for the process count: a key typed before its
    // program runs reaches the shell's line editor instead.
    let id = ps_row(&w, "tty").unwrap()["id"].as_str().unwrap().to_string();
    let procs = || {
        let f = Path::new("/sys/fs/cgroup/unified/rcon").join(&id).join("cgroup.procs");
        std::fs::read_to_string(f).map(|s| s.lines().count()).unwrap_or(0)
    };
    // Ctrl-D reaches the program reading the terminal: it ends cat's input, not the session.
    tmux(&["send-keys", "-t", &session, "cat > /tmp/typed", "Enter"]);
    wait_until("cat to start", || procs() == 2);
    tmux(&["send-keys", "-t", &session, "typed-line", "Enter"]);
    tmux(&["send-keys", "-t", &session, "C-d", ""]);
    tmux(&["send-keys", "-t", &session, "clear; wc -c < /tmp/typed", "Enter"]);
    wait_until("cat to end on Ctrl-D", || screen().lines().any(|l| l.trim() == "11"));
    // Ctrl-C reaches the shell's foreground job: sleep dies, the shell lives on.
    // It is sent once sleep's process group owns the terminal: a Ctrl-C
    // between the shell's fork and its tcsetpgrp would reach the shell.
    tmux(&["send-keys", "-t", &session, "sleep 100", "Enter"]);
    wait_until("sleep to own the terminal", || procs() == 2 && foreground_job(&id));
    tmux(&["send-keys", "-t", &session, "C-c", ""]);
    wait_until("Ctrl-C to end sleep", || procs() == 1);
    tmux(&["send-keys", "-t", &session, "echo after-$((40+2))", "Enter"]);
    wait_until("the shell to survive Ctrl-C", || screen().contains("after-42"));
    tmux(&["send-keys", "-t", &session, "exit 3", "Enter"]);
    wait_until("the exit status", || std::fs::read_to_string(&status).is_ok_and(|s| !s.trim().is_empty()));
    let _ = tmux(&["kill-session", "-t", &session]);
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "3");
    assert!(w.containers().iter().all(|c| c.starts_with('.')), "--rm left {:?}", w.containers());
}

/// Whether a process of container `id` other than its shell leads the
/// terminal's foreground process group (/proc/PID/stat: pgrp and tpgid).
fn foreground_job(id: &str) -> bool {
    let f = Path::new("/sys/fs/cgroup/unified/rcon").join(id).join("cgroup.procs");
    let pids = std::fs::read_to_string(f).unwrap_or_default();
    pids.lines().any(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the command name: state ppid pgrp session tty_nr tpgid.
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        f.len() > 5 && f[2] == f[5] && f[2] != f[3] && f[2] == pid
    })
}

/// Closing the window of a `run -it` (tmux kill-session) hangs up the
/// container's terminal too: the shell exits and --rm removes everything.
#[test]
fn closed_terminal_ends_the_container() {
    let w = world_with_busybox("drhup");
    let session = unique("tmux");
    let cmd = format!("{} run -it --rm --name hup busybox sh", shell_rcon(&w));
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(tmux(&["new-session", "-d", "-s", &session, &cmd]).status.success());
    wait_until("the container to run", || is_running(&w, "hup"));
    let id = ps_row(&w, "hup").unwrap()["id"].as_str().unwrap().to_string();
    tmux(&["kill-session", "-t", &session]);
    wait_until("the container to be removed", || !w.data_root.join("containers").join(&id).exists());
    assert_nothing_left(&w, &id);
}

/// Each `/proc/self/cgroup` line's path (`ID:CONTROLLERS:PATH`).
fn cgroup_paths(out: &str) -> Vec<&str> {
    out.lines().take_while(|l| *l != "==").filter_map(|l| l.splitn(3, ':').nth(2)).collect()
}

/// Its own cgroup namespace by default (issue 17 part 5): the container's
/// cgroup is its root in /proc/self/cgroup and in /sys/fs/cgroup, where no
/// other container's group shows; a pod's containers too. `--cgroupns host`
/// shows the full path and the other containers.
#[test]
fn cgroup_namespace_is_private_unless_host() {
    let w = world_with_busybox("dcg");
    let other = w.ok(&["run", "-d", "--name", "other", "--network", "none", "busybox", "sleep", "1000"]);
    let other = other.trim();
    let script = "cat /proc/self/cgroup; echo ==; find /sys/fs/cgroup -type d";
    w.ok(&["pod", "create", "--name", "p1", "--network", "none"]);
    for extra in [&[][..], &["--cgroupns", "private"], &["--pod", "p1"]] {
        let mut args = vec!["run", "--rm"];
        if extra.is_empty() || extra[0] != "--pod" {
            args.extend(["--network", "none"]);
        }
        args.extend_from_slice(extra);
        args.extend(["busybox", "sh", "-c", script]);
        let out = w.ok(&args);
        let paths = cgroup_paths(&out);
        assert!(paths.contains(&"/") && paths.iter().all(|p| *p == "/"), "{extra:?}: {out}");
        let dirs = out.split("==\n").nth(1).unwrap_or_default();
        assert_eq!(dirs.trim(), "/sys/fs/cgroup", "{extra:?}: more than its own group is visible: {out}");
        assert!(!out.contains(other), "{extra:?} sees the other container: {out}");
    }
    // The host's namespace: the full path, and the other container beside it.
    let out = w.ok(&["run", "--rm", "--network", "none", "--cgroupns", "host", "busybox", "sh", "-c", script]);
    let unified = out.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default();
    assert!(unified.starts_with("/rcon/"), "{out}");
    assert!(out.contains(&format!("/sys/fs/cgroup/rcon/{other}")), "{out}");
    assert!(out.contains(&format!("/sys/fs/cgroup{unified}")), "its own group is not in the tree: {out}");
    // Bad values and bundles: one line, nothing made.
    let err = w.fails(&["run", "--rm", "--cgroupns", "shared", "busybox", "true"]);
    assert!(err.contains("shared") && err.contains("private") && err.contains("host"), "{err}");
    let err = w.fails(&["run", "--bundle", "/nonexistent", "--cgroupns", "host", "x"]);
    assert!(err.contains("--cgroupns") && err.contains("linux.namespaces"), "{err}");
    w.ok(&["pod", "rm", "-f", "p1"]);
    w.ok(&["rm", "-f", "other"]);
    assert_eq!(w.ok(&["ps", "-a", "-q"]).trim(), "");
}
