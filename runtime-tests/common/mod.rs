//! The test world: private state roots, a private netns dir, bundles made
//! from the busybox rootfs that hack/mkbundle.sh prepares, and a guard that
//! removes everything on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub fn rcon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rcon")
}

/// The busybox rootfs built by `hack/mkbundle.sh` (RCON_TEST_ROOTFS overrides).
pub fn busybox_rootfs() -> PathBuf {
    let p = std::env::var_os("RCON_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/.cache/busybox/rootfs"));
    assert!(
        p.join("bin/busybox").exists(),
        "no busybox rootfs at {}: run hack/mkbundle.sh (make test does)",
        p.display()
    );
    p
}

pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "runtime-tests need root");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique short prefix for kernel object names (netns, links) of one test.
pub fn unique(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("rt{}{}{}", tag, std::process::id() % 100_000, n)
}

/// One test's private world: rcon state, data and netns dirs in a temp dir.
pub struct World {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub netns_dir: PathBuf,
    pub data_root: PathBuf,
    /// Named namespaces made in the real /var/run/netns (ip netns interop), removed on drop.
    pub system_netns: Vec<String>,
    /// The node namespace rcon runs in (`World::with_node`), so that bridges,
    /// rules and sysctls land there and never in the machine's own namespace.
    pub node: Option<String>,
    /// rcon's netns dir is /var/run/netns itself (`World::use_system_netns_dir`).
    pub system_netns_dir: bool,
}

impl World {
    pub fn new(tag: &str) -> World {
        require_root();
        let name = unique(tag);
        let dir = tempfile::Builder::new().prefix(&format!("rcon-{name}-")).tempdir().unwrap();
        let root = dir.path().join("run");
        let netns_dir = dir.path().join("netns");
        let data_root = dir.path().join("lib");
        World { name, dir, root, netns_dir, data_root, system_netns: Vec::new(), node: None, system_netns_dir: false }
    }

    /// A world whose rcon runs inside a fresh "node" namespace (TESTING.md):
    /// `{name}n`, with lo up.
    pub fn with_node(tag: &str) -> World {
        let mut w = World::new(tag);
        let node = format!("{}n", w.name);
        w.add_system_netns(&node);
        w.node = Some(node);
        w
    }

    /// Give rcon /var/run/netns as its netns dir, so that `ip netns` sees its
    /// namespaces. Name them with `self.name` first: the drop removes those
    /// (and hack/sweep.sh those of a crashed run).
    pub fn use_system_netns_dir(&mut self) {
        self.system_netns_dir = true;
    }

    fn rcon_netns_dir(&self) -> &Path {
        if self.system_netns_dir {
            Path::new("/var/run/netns")
        } else {
            &self.netns_dir
        }
    }

    /// `ip netns add NAME` with lo up, removed when the world drops.
    pub fn add_system_netns(&mut self, name: &str) {
        sh(&format!("ip netns add {name} && ip -n {name} link set lo up"));
        self.system_netns.push(name.to_string());
    }

    /// Run a shell command inside the named namespace; panics on failure.
    pub fn sh_in(&self, ns: &str, cmd: &str) -> String {
        sh(&format!("nsenter --net=/var/run/netns/{ns} sh -c '{}'", cmd.replace('\'', "'\\''")))
    }

    /// A `Command` for rcon with this world's roots in the environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(rcon_bin());
        c.args(args)
            .env("RCON_ROOT", &self.root)
            .env("RCON_NETNS_DIR", self.rcon_netns_dir())
            .env("RCON_DATA_ROOT", &self.data_root)
            .stdin(Stdio::null());
        if let Some(node) = &self.node {
            let ns = std::fs::File::open(format!("/var/run/netns/{node}")).expect("opening the node netns");
            use std::os::unix::process::CommandExt;
            unsafe {
                c.pre_exec(move || {
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
                });
            }
        }
        c
    }

    pub fn rcon(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawning rcon")
    }

    /// Run rcon and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.rcon(args);
        assert!(
            out.status.success(),
            "rcon {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run rcon and require failure with exactly one line on stderr; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.rcon(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "rcon {args:?} succeeded but should fail: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "rcon {args:?}: error is not one line: {err:?}");
        err
    }

    /// A bundle dir with a private copy of the busybox rootfs and a config
    /// built from `rcon spec`, adjusted by `edit`.
    pub fn bundle(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        let b = self.dir.path().join("bundles").join(name);
        std::fs::create_dir_all(&b).unwrap();
        let st = Command::new("cp").arg("-a").arg(busybox_rootfs()).arg(b.join("rootfs")).status().unwrap();
        assert!(st.success());
        self.ok(&["spec", "--bundle", b.to_str().unwrap()]);
        let path = b.join("config.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["process"]["terminal"] = false.into();
        edit(&mut v);
        std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        b
    }

    /// Container ids known to this world's state root.
    pub fn containers(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Pods first: `pod rm -f` ends their containers and pause processes.
        for e in std::fs::read_dir(self.data_root.join("pods")).into_iter().flatten().flatten() {
            if let Some(pod) = e.file_name().to_string_lossy().strip_suffix(".json") {
                let _ = self.cmd(&["pod", "rm", "-f", pod]).output();
            }
        }
        for id in self.containers() {
            let _ = self.cmd(&["delete", "--force", &id]).output();
        }
        for name in &self.system_netns {
            let _ = Command::new("ip").args(["netns", "delete", name]).stderr(Stdio::null()).status();
        }
        if self.system_netns_dir {
            for e in std::fs::read_dir("/var/run/netns").into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.name) {
                    let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // Unmount every netns bind mount, then the dir itself (rcon made it a mount point).
        if let Ok(rd) = std::fs::read_dir(&self.netns_dir) {
            for e in rd.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        while nix::mount::umount2(&self.netns_dir, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    }
}

/// Run a shell command on the host side (e.g. `ip -n NS …`); panics on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The root namespace's links, netns files and mounts, to compare before/after.
pub fn host_snapshot() -> (String, String) {
    let links = sh("ip -o link show | awk -F': ' '{print $2}' | sort");
    let netns = sh("ls /var/run/netns 2>/dev/null | sort || true");
    (links, netns)
}

// ---------------------------------------------------------------------------
// Lifecycle helpers (runtime-tests/{lifecycle,namespaces,hooks,console,badinput}.rs)

/// The result of an rcon call whose stdout/stderr were files, not pipes.
pub struct FileOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Where rcon's stdout went: a container it left behind keeps writing there.
    pub stdout_path: PathBuf,
}

static IO_SEQ: AtomicU32 = AtomicU32::new(0);

impl World {
    /// Run rcon with stdout/stderr redirected to files in the world's dir.
    /// Needed for `create`, `run --detach` and `exec -d`: the container keeps
    /// its copies of rcon's stdio, so `output()` on pipes would wait for it.
    pub fn rcon_files(&self, args: &[&str]) -> FileOutput {
        let n = IO_SEQ.fetch_add(1, Ordering::SeqCst);
        let io = self.dir.path().join("io");
        std::fs::create_dir_all(&io).unwrap();
        let (out_p, err_p) = (io.join(format!("{n}.out")), io.join(format!("{n}.err")));
        let status = self
            .cmd(args)
            .stdout(std::fs::File::create(&out_p).unwrap())
            .stderr(std::fs::File::create(&err_p).unwrap())
            .status()
            .expect("spawning rcon");
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        FileOutput { status, stdout: read(&out_p), stderr: read(&err_p), stdout_path: out_p }
    }

    /// `rcon_files` that must succeed.
    pub fn ok_files(&self, args: &[&str]) -> FileOutput {
        let o = self.rcon_files(args);
        assert!(o.status.success(), "rcon {args:?} failed ({}): {}{}", o.status, o.stdout, o.stderr);
        o
    }

    /// `rcon_files` that must fail with exactly one line on stderr; returns it.
    pub fn fails_files(&self, args: &[&str]) -> String {
        let o = self.rcon_files(args);
        assert!(!o.status.success(), "rcon {args:?} succeeded but should fail: {}", o.stderr);
        assert_eq!(o.stderr.trim_end().lines().count(), 1, "rcon {args:?}: error is not one line: {:?}", o.stderr);
        o.stderr
    }

    /// `rcon state ID` parsed.
    pub fn state_of(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// A container id unique to this world.
    pub fn id(&self, tag: &str) -> String {
        format!("{}-{tag}", self.name)
    }
}

/// The process exists and is not a zombie (pid 1 here does not reap orphans).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rfind(')') {
            Some(i) => !matches!(s[i + 2..].chars().next(), Some('Z') | Some('X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// Poll `cond` until it holds (panics after 15 s: a liveness bound, not a timing assertion).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !cond() {
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wait for `pid` to be gone (or a zombie).
pub fn wait_pid_gone(pid: i32) {
    wait_until(&format!("pid {pid} to exit"), || !pid_alive(pid));
}

/// Live processes whose root directory is `dir` (a container rooted in a bundle's rootfs).
pub fn procs_rooted_in(dir: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(want) = std::fs::metadata(dir) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            std::fs::metadata(format!("/proc/{p}/root")).is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
                && pid_alive(p)
        })
        .collect()
}

/// Lines of our /proc/self/mountinfo that mention `path`.
pub fn mountinfo_lines(path: &Path) -> Vec<String> {
    let p = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(p))
        .map(String::from)
        .collect()
}

/// The end-of-test check: force-delete every container of the world, then no
/// state entry, no process rooted in any of `bundles`' rootfs, no mount of them.
pub fn assert_clean(w: &World, bundles: &[&Path]) {
    for id in w.containers() {
        let _ = w.rcon_files(&["delete", "--force", &id]);
    }
    assert!(w.containers().is_empty(), "state entries left: {:?}", w.containers());
    for b in bundles {
        let rootfs = b.join("rootfs");
        wait_until(&format!("processes rooted in {} to exit", rootfs.display()), || {
            procs_rooted_in(&rootfs).is_empty()
        });
        assert_eq!(mountinfo_lines(&rootfs), Vec::<String>::new(), "mounts of {} left", rootfs.display());
    }
}
