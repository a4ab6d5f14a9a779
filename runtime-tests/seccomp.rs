//! `rcon run`'s seccomp confinement: the default profile refuses the user
//! namespace escape and Docker's list of blocked calls with EPERM, still runs
//! busybox, static and dynamic glibc programs and the network tools; `--security-opt`
//! switches it off, swaps in a profile file, or sets no-new-privileges; bad
//! options are one line and leave nothing. (Bundles' own `linux.seccomp` is
//! spec_musts::seccomp_filters_confine_the_init_and_exec.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::{sh, World};
use crate::network::{net_world, UPLINK_INET};

fn busybox_world(tag: &str) -> World {
    let w = World::with_node(tag);
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/.cache/busybox-oci");
    w.ok(&["image", "import", layout.to_str().unwrap(), "busybox"]);
    w
}

/// (exit code, stdout, stderr) of an rcon call.
fn run(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = w.rcon(args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `run --rm --network none [flags] busybox sh -c SCRIPT`.
fn sh_run(w: &World, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend(["busybox", "sh", "-c", script]);
    run(w, &args)
}

const ESCAPE: &str =
    "unshare -Urmn sh -c 'mount -t tmpfs x /tmp && ip link add v0 type veth peer name v1 && echo escaped'";

#[test]
fn the_user_namespace_escape_is_refused_unless_unconfined() {
    let w = busybox_world("scesc");
    let (code, out, err) = sh_run(&w, &[], ESCAPE);
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("escaped"), "{out}");
    assert!(err.contains("unshare") && err.contains("Operation not permitted"), "{err}");
    // The same kernel lets it through without the filter: the filter is what refused it.
    // (The veth lives in the container's own namespaces, which die with it.)
    let (code, out, err) = sh_run(&w, &["--security-opt", "seccomp=unconfined"], ESCAPE);
    assert_eq!((code, out.trim()), (0, "escaped"), "{err}");
    let (_, out, _) = sh_run(&w, &[], "grep '^Seccomp:' /proc/self/status");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2"]);
    let (_, out, _) = sh_run(&w, &["--security-opt", "seccomp=unconfined"], "grep '^Seccomp:' /proc/self/status");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "0"]);
}

/// A glibc program (built static and dynamic) that makes each named call with arguments the
/// kernel itself would refuse with an error other than EPERM, and prints
/// `name=ERRNO` (or `name=ok`): EPERM then can only come from the filter.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static void *nothing(void *a) { return a; }
/* glibc has strerrorname_np, musl does not: the names the checks need. */
static const char *ename(int e) {
    static char other[16];
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case E2BIG: return "E2BIG";
    }
    snprintf(other, sizeof other, "E%d", e);
    return other;
}
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *n = argv[i];
        long r;
        errno = 0;
        if (!strcmp(n, "keyctl")) r = syscall(SYS_keyctl, 9999, 0, 0, 0, 0);
        else if (!strcmp(n, "add_key")) r = syscall(SYS_add_key, (char *)1, (char *)1, NULL, 0, 0);
        else if (!strcmp(n, "request_key")) r = syscall(SYS_request_key, (char *)1, (char *)1, NULL, 0);
        else if (!strcmp(n, "bpf")) r = syscall(SYS_bpf, 9999, NULL, 0);
        else if (!strcmp(n, "perf_event_open")) r = syscall(SYS_perf_event_open, (void *)1, 0, -1, -1, 0);
        else if (!strcmp(n, "mount")) r = syscall(SYS_mount, (char *)1, (char *)1, (char *)1, 0, NULL);
        else if (!strcmp(n, "umount2")) r = syscall(SYS_umount2, "/", 0xffff);
        else if (!strcmp(n, "setns")) r = syscall(SYS_setns, -1, 0);
        else if (!strcmp(n, "unshare")) r = syscall(SYS_unshare, 0x80000000UL);
        else if (!strcmp(n, "clone3")) r = syscall(SYS_clone3, NULL, 0);
        else if (!strcmp(n, "open_by_handle_at")) r = syscall(SYS_open_by_handle_at, -1, NULL, 0);
        else if (!strcmp(n, "getpid")) r = syscall(SYS_getpid);
        else if (!strcmp(n, "thread")) {
            pthread_t t;
            r = pthread_create(&t, NULL, nothing, NULL) == 0 && pthread_join(t, NULL) == 0 ? 0 : -1;
        } else { printf("%s=unknown\n", n); continue; }
        printf("%s=%s\n", n, r == -1 ? ename(errno) : "ok");
    }
    return 0;
}
"#;

/// An image holding /probe (glibc, static), /probe-musl (musl, static) and
/// /probe-dyn (glibc, dynamic, with the loader and libraries `ldd` names at
/// their own paths).
fn probe_image(w: &World) {
    let dir = w.dir.path().join("probe");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    std::fs::write(&src, PROBE_C).unwrap();
    let cc = |compiler: &str, out: &str, flags: &[&str]| {
        let bin = dir.join(out);
        let st = Command::new(compiler).args(flags).args(["-O2", "-pthread", "-o"]).arg(&bin).arg(&src).status();
        let st = st.unwrap_or_else(|e| panic!("{compiler}: {e} (hack/install-deps.sh)"));
        assert!(st.success(), "building the probe with {compiler} {flags:?}");
        bin
    };
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name(cc("cc", "probe", &["-static"]), "probe").unwrap();
    b.append_path_with_name(cc("musl-gcc", "probe-musl", &["-static"]), "probe-musl").unwrap();
    let dynamic = cc("cc", "probe-dyn", &[]);
    b.append_path_with_name(&dynamic, "probe-dyn").unwrap();
    let ldd = sh(&format!("ldd {}", dynamic.display()));
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)"
    for lib in ldd.split_whitespace().filter(|t| t.starts_with('/')) {
        b.append_path_with_name(lib, lib.trim_start_matches('/')).unwrap();
    }
    let layer = b.into_inner().unwrap();
    let layout = dir.join("layout");
    crate::images::layout(&layout, &[layer]);
    w.ok(&["image", "import", layout.to_str().unwrap(), "probe"]);
}

const BLOCKED: [&str; 11] = [
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "mount",
    "umount2",
    "setns",
    "unshare",
    "open_by_handle_at",
    "clone3",
];

fn probe(w: &World, bin: &str, flags: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["run", "--rm", "--network", "none", "-w", "/"];
    args.extend_from_slice(flags);
    args.extend(["probe", bin, "getpid", "thread"]);
    args.extend(BLOCKED);
    let (code, out, err) = run(w, &args);
    assert_eq!(code, 0, "{out}{err}");
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn blocked_calls_get_eperm_and_unconfined_lets_them_through() {
    let w = busybox_world("scblk");
    probe_image(&w);
    let got = probe(&w, "/probe", &[]);
    let want: Vec<(String, String)> = ["getpid", "thread"]
        .iter()
        .map(|n| (n.to_string(), "ok".to_string()))
        .chain(BLOCKED.iter().map(|n| {
            // clone3 says ENOSYS, so that libc falls back to clone (which `thread` just used).
            (n.to_string(), if *n == "clone3" { "ENOSYS" } else { "EPERM" }.to_string())
        }))
        .collect();
    assert_eq!(got, want);
    // A dynamically linked glibc program: the loader's calls are allowed too.
    assert_eq!(probe(&w, "/probe-dyn", &[]), want);
    // musl starts, makes threads and fails the same calls the same way.
    assert_eq!(probe(&w, "/probe-musl", &[]), want);
    // Without the filter the kernel answers each of these with its own error
    // (EFAULT, EINVAL, EBADF...): the arguments were bad, so EPERM above was
    // the filter's. bpf and open_by_handle_at check their capability first,
    // so the kernel says EPERM for them too.
    let got = probe(&w, "/probe", &["--security-opt", "seccomp=unconfined"]);
    for (name, errno) in &got {
        if ["getpid", "thread", "bpf", "open_by_handle_at"].contains(&name.as_str()) {
            continue;
        }
        assert_ne!(errno, "EPERM", "{name} unconfined: {got:?}");
    }
}

#[test]
fn busybox_and_the_network_work_under_the_default_profile() {
    let mut nw = net_world("scnet", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.31.0.0/24", "front"]);
    nw.inet_listener(7100);
    nw.w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo page > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ip = crate::network::ip_of(&nw.w, "web");
    let script = format!(
        "grep '^Seccomp:' /proc/self/status; ping -c1 -w3 {ip} >/dev/null && echo ping-ok; \
         for i in 1 2 3 4 5; do wget -q -O - http://{ip}/ && break; sleep 1; done; \
         nc -w 2 {UPLINK_INET} 7100"
    );
    let (code, out) = nw.client("front", &script);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 4, "exit {code}: {out}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2"]);
    assert_eq!(&lines[1..3], ["ping-ok", "page"], "{out}");
    assert!(lines[3].starts_with("peer="), "{out}");
    nw.w.ok(&["rm", "-f", "web"]);
}

fn write(w: &World, name: &str, v: serde_json::Value) -> PathBuf {
    let p = w.dir.path().join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

#[test]
fn a_profile_file_blocks_what_it_names_and_inspect_shows_it() {
    let w = busybox_world("scfile");
    // Docker's format: archMap, and rules that apply by capability.
    let file = write(
        &w,
        "no-mkdir.json",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "comment": "applies: no CAP_SYS_ADMIN"},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            ]
        }),
    );
    let opt = format!("seccomp={}", file.display());
    let (code, out, err) = sh_run(&w, &["--security-opt", &opt], "mkdir /x; rmdir /tmp && echo rmdir-ok");
    assert_eq!(out.trim(), "rmdir-ok", "exit {code}: {err}");
    assert!(err.contains("mkdir") && err.contains("Operation not permitted"), "{err}");
    // The default profile lets mkdir through.
    let (code, _, err) = sh_run(&w, &[], "mkdir /x");
    assert_eq!(code, 0, "{err}");

    w.ok(&["run", "-d", "--name", "f", "--network", "none", "--security-opt", &opt, "busybox", "sleep", "600"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "f"])).unwrap();
    assert_eq!(v["security_opt"], json!({"seccomp": file.to_str().unwrap(), "no_new_privileges": false}));
    w.ok(&["rm", "-f", "f"]);
    w.ok(&["run", "-d", "--name", "d", "--network", "none", "busybox", "sleep", "600"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "d"])).unwrap();
    assert_eq!(v["security_opt"], json!({"seccomp": "default", "no_new_privileges": false}));
    w.ok(&["rm", "-f", "d"]);
}

#[test]
fn no_new_privileges_reaches_the_process() {
    let w = busybox_world("scnnp");
    let nnp = |flags: &[&str]| {
        let (code, out, err) = sh_run(&w, flags, "grep '^NoNewPrivs:' /proc/self/status");
        assert_eq!(code, 0, "{err}");
        out.split_whitespace().nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(nnp(&[]), "0");
    assert_eq!(nnp(&["--security-opt", "no-new-privileges"]), "1");
    assert_eq!(nnp(&["--security-opt", "no-new-privileges:true"]), "1");
    // With the default filter too (loaded after no_new_privs, as late as possible).
    let (code, out, err) = sh_run(&w, &["--security-opt", "no-new-privileges"], "unshare -U true; echo rc=$?");
    assert!(err.contains("Operation not permitted") && out.trim() == "rc=1", "exit {code}: {out}{err}");
}

#[test]
fn bad_security_opts_are_one_line_and_leave_nothing() {
    let w = busybox_world("scbad");
    let missing = w.dir.path().join("no-such-profile.json");
    let bad_json = w.dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\"defaultAction\": \"SCMP_ACT_ALLOW\",").unwrap();
    // Parses, but rcon's runtime cannot apply it: refused after the run has begun making things.
    let flag = write(
        &w,
        "flag.json",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
    );
    let cases = [
        (format!("seccomp={}", missing.display()), vec!["no-such-profile.json", "No such file"]),
        (format!("seccomp={}", bad_json.display()), vec!["bad.json", "not a seccomp profile", "line 1"]),
        (format!("seccomp={}", flag.display()), vec!["flag.json", "WAIT_KILLABLE_RECV", "not supported"]),
        ("apparmor=unconfined".to_string(), vec!["unknown option \"apparmor\""]),
        ("no-new-privileges=maybe".to_string(), vec!["\"maybe\" is not true or false"]),
    ];
    for (opt, needles) in &cases {
        let err = w.fails(&["run", "--rm", "--name", "bad", "--security-opt", opt, "busybox", "true"]);
        assert!(err.contains("--security-opt"), "{err}");
        for n in needles {
            assert!(err.contains(n), "{opt}: {n:?} not in {err}");
        }
        assert!(w.containers().iter().all(|c| c.starts_with('.')), "{opt}: a container left: {:?}", w.containers());
        let data = w.data_root.join("containers");
        let left = std::fs::read_dir(&data).map(|rd| rd.count()).unwrap_or(0);
        assert_eq!(left, 0, "{opt}: a data dir left in {}", data.display());
        let names = std::fs::read_dir(w.root.join(".names")).map(|rd| rd.count()).unwrap_or(0);
        assert_eq!(names, 0, "{opt}: a name reservation left");
        let veths = w.sh_in(w.node.as_deref().unwrap(), "ip -o link show type veth");
        assert_eq!(veths.trim(), "", "{opt}: a veth left");
    }
    // The name was never taken.
    w.ok(&["run", "--rm", "--name", "bad", "--network", "none", "busybox", "true"]);
}

#[test]
fn exec_into_a_run_container_is_confined_as_its_init() {
    let w = busybox_world("scexec");
    w.ok(&["run", "-d", "--name", "c", "--network", "none", "busybox", "sleep", "600"]);
    let out = w.ok(&["exec", "c", "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2"]);
    let out = w.rcon(&["exec", "c", "unshare", "-U", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Operation not permitted"), "{err}");
    w.ok(&["rm", "-f", "c"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "u",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sleep",
        "600",
    ]);
    let out = w.ok(&["exec", "u", "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "0"]);
    w.ok(&["rm", "-f", "u"]);
}
