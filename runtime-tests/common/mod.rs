//! The test world: private state roots, a private netns dir, bundles made
//! from the busybox rootfs that hack/mkbundle.sh prepares, and a guard that
//! removes everything on drop.
//!
//! # Test worlds and host sysctls
//!
//! A new network namespace copies `net.ipv4.conf.{all,default}.*` (so
//! `ip_forward`, `rp_filter`, `route_localnet`, `proxy_arp`) from the
//! machine's root namespace at the moment it is made, whoever makes it and
//! from whichever namespace (`net.core.devconf_inherit_init_net=0`, the
//! default). On a Docker or Kubernetes host `ip_forward` is 1 there, so a
//! node namespace would start out forwarding: tests that check rcon turns
//! forwarding on pass without rcon, and those that check it is put back to 0
//! fail. The tests must not touch the root namespace (TESTING.md), so every
//! namespace a world makes gets an explicit baseline instead: [`new_netns`]
//! (and so [`World::add_system_netns`], [`World::with_node`]) writes the
//! values of `hack/lib/netns-baseline.conf` (a fresh host's defaults:
//! forwarding 0, rp_filter 0, route_localnet 0, proxy_arp 0, and
//! bridge-nf-call-* 1) into it right after `ip netns add`, before any link is made there (a new
//! device copies `conf.default`) and before rcon runs there. A world that
//! needs another value sets it after the baseline (cluster.rs's router turns
//! ip_forward on). The same file is the baseline of hack/lib/world.sh (demo,
//! benches) and of the qemu scenarios (hack/qemu/scenarios/lib.sh), and
//! `host_sysctls_do_not_leak_into_worlds_in_qemu` (qemu.rs) proves it in a VM
//! whose root namespace forwards, filters reverse paths and routes localnet.
//!
//! Namespaces rcon makes (containers, pods) copy the root namespace's values
//! as in production; a test that reads a sysctl there compares with what a
//! new namespace gets ([`new_netns_default`]), not with a constant.
//! Which tests depend on what: the node's `ip_forward` starting at 0
//! (firewall.rs: `firewall_forwarding`, `firewall_masquerade_*`,
//! `firewall_isolation_*`; network.rs: `bridge_paths_*`), a new namespace's
//! `ip_forward` (lifecycle.rs: `sysctl_is_set_in_the_container_only`), and
//! bridge-nf-call-iptables=1 (ports.rs: a neighbour container reaching a
//! published port by the node's address).

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
    /// More environment for every rcon call (`RCON_RESOLV_CONF` …).
    pub env: Vec<(String, String)>,
}

impl World {
    pub fn new(tag: &str) -> World {
        require_root();
        let name = unique(tag);
        let dir = tempfile::Builder::new().prefix(&format!("rcon-{name}-")).tempdir().unwrap();
        let root = dir.path().join("run");
        let netns_dir = dir.path().join("netns");
        let data_root = dir.path().join("lib");
        World {
            name,
            dir,
            root,
            netns_dir,
            data_root,
            system_netns: Vec::new(),
            node: None,
            system_netns_dir: false,
            env: Vec::new(),
        }
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

    /// [`new_netns`] (`ip netns add NAME`, lo up, the sysctl baseline), removed when the world drops.
    pub fn add_system_netns(&mut self, name: &str) {
        new_netns(name);
        self.system_netns.push(name.to_string());
    }

    /// Run a shell command inside the named namespace; panics on failure.
    pub fn sh_in(&self, ns: &str, cmd: &str) -> String {
        sh(&format!("nsenter --net=/var/run/netns/{ns} sh -c '{}'", cmd.replace('\'', "'\\''")))
    }

    /// A `Command` for rcon with this world's roots in the environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.wrapped(&[], args)
    }

    /// [`World::cmd`] with rcon run by `wrapper` (a program and its flags, e.g. strace's).
    pub fn wrapped(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((prog, flags)) => {
                let mut c = Command::new(prog);
                c.args(flags).arg(rcon_bin());
                c
            }
            None => Command::new(rcon_bin()),
        };
        c.args(args)
            .env("RCON_ROOT", &self.root)
            .env("RCON_NETNS_DIR", self.rcon_netns_dir())
            .env("RCON_DATA_ROOT", &self.data_root)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if let Some(node) = &self.node {
            let ns = std::fs::File::open(format!("/var/run/netns/{node}")).expect("opening the node netns");
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook runs in the forked child before exec and only
            // calls setns(2) on an fd it owns: async-signal-safe, no allocation.
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
        // What a test that failed midway left half-made (a pod whose creator was killed, with its
        // cgroups): later tests look at the whole machine's pod groups.
        let _ = self.cmd(&["gc"]).output();
        stop_resolver(&self.root);
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

/// The pid of the world's DNS resolver (`<root>/.dns/daemon.json`), when one is recorded.
pub fn resolver_pid(root: &Path) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join(".dns/daemon.json")).ok()?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// End a resolver the test left running (a test that failed midway): TERM to the recorded
/// supervisor, which ends its worker, when that pid is still an `rcon dns`.
pub fn stop_resolver(root: &Path) {
    let Some(pid) = resolver_pid(root) else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if cmdline.split(|b| *b == 0).any(|a| a == b"dns") {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        // Not wait_until: a panic in a drop that runs while unwinding would abort the suite.
        for _ in 0..250 {
            if !pid_alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The sysctl baseline of every namespace a test world makes (see the module comment).
pub const NETNS_BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/lib/netns-baseline.conf");

/// `hack/lib/netns-baseline.conf` as (key, value) pairs, in order.
pub fn netns_baseline_entries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(NETNS_BASELINE).unwrap_or_else(|e| panic!("reading {NETNS_BASELINE}: {e}"));
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{NETNS_BASELINE}: not `key = value`: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// The /proc/sys file of a dotted sysctl key.
pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Write the baseline into the namespace /var/run/netns/NS (from a thread
/// inside it: /proc/sys/net follows the thread's namespace). Keys this kernel
/// lacks are skipped; a failed write panics.
pub fn netns_baseline(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap_or_else(|e| panic!("opening netns {ns}: {e}"));
    let entries = netns_baseline_entries();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns for the sysctl baseline");
            for (k, v) in &entries {
                let p = sysctl_path(k);
                if p.exists() {
                    std::fs::write(&p, v).unwrap_or_else(|e| panic!("netns {ns}: writing {v} to {k}: {e}"));
                }
            }
        })
        .join()
        .expect("the baseline thread panicked")
    });
}

/// A named netns for a test world: `ip netns add NS`, lo up, and the sysctl
/// baseline. The caller removes it (`World` does for `add_system_netns`).
pub fn new_netns(ns: &str) {
    sh(&format!("ip netns add {ns}"));
    netns_baseline(ns);
    sh(&format!("ip -n {ns} link set lo up"));
}

/// What a namespace made now without a baseline (a container's, a pod's)
/// starts with for `key`: read in a throwaway namespace, nothing written.
pub fn new_netns_default(key: &str) -> String {
    let path = sysctl_path(key);
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare a throwaway netns");
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {key}: {e}")).trim().to_string()
        })
        .join()
        .expect("the probe thread panicked")
    })
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
