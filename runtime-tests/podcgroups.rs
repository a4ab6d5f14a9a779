//! The pod-level cgroup (`pod create --memory … --pids-limit …`), proved by
//! behaviour: two containers of a pod share its memory and pids limits
//! (one hog alone fits, two together do not), their processes sit in groups
//! nested inside the pod's, an OCI bundle with the pod annotation nests too,
//! and `pod rm`, a failed create and `gc` after a killed create leave no
//! group under any hierarchy.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cgroups::cgroup_mounts;
use crate::common::*;
use crate::dockerrun::world_with_busybox;
use crate::pods::inspect;

/// Holds about 40 MiB in `tail` (the peak of the pipeline is about 43 MB)
/// until the pipe closes.
const HOLD_40M: &str = "{ head -c 41943040 /dev/zero; echo; sleep 1000; } | tail -n 1 | wc -c";

/// Needs about 40 MiB for a moment and prints the byte count. It makes
/// itself the OOM killer's first pick, and with pipefail a killed `tail`
/// makes the shell exit 137.
const HOG_40M: &str = "set -o pipefail; echo 1000 >/proc/self/oom_score_adj; head -c 41943040 /dev/zero | tail | wc -c";

/// The pod's groups from `pod inspect`: (cgroup2 dir, v1 dirs).
fn pod_dirs(w: &World, pod: &str) -> Vec<PathBuf> {
    let v = inspect(w, pod);
    v["cgroup"]["CgroupDirs"].as_array().unwrap().iter().map(|d| PathBuf::from(d.as_str().unwrap())).collect()
}

/// The dir among `dirs` that has `file`.
fn with_file(dirs: &[PathBuf], file: &str) -> PathBuf {
    dirs.iter().find(|d| d.join(file).exists()).unwrap_or_else(|| panic!("no pod group has {file}: {dirs:?}")).clone()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
}

/// No group of the pod is left under any hierarchy.
fn assert_no_pod_group(pod_id: &str) {
    for m in cgroup_mounts() {
        let g = m.join("rcon").join(format!("pod-{pod_id}"));
        assert!(!g.exists(), "{} is left", g.display());
    }
}

fn pod_id(w: &World, pod: &str) -> String {
    inspect(w, pod)["id"].as_str().unwrap().to_string()
}

/// `run --pod POD` in the foreground: (exit code, stdout, stderr).
fn run_in(w: &World, pod: &str, script: &str) -> (i32, String, String) {
    let out = w.rcon(&["run", "--rm", "--pod", pod, "busybox", "sh", "-c", script]);
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

/// A container's pid, from `inspect`.
fn pid_of(w: &World, name: &str) -> i32 {
    let v: Value = serde_json::from_str(&w.ok(&["inspect", name])).unwrap();
    v["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {v}")) as i32
}

/// Pod `--memory 64m`: a 40 MiB hog runs fine alone in the pod, but beside
/// a container that holds 40 MiB it is OOM-killed (137) while the holder
/// lives. The holder's process is in a group inside the pod's, and the
/// pod's group carries the limit.
#[test]
fn memory_limit_binds_the_pods_containers_together() {
    let w = world_with_busybox("pcm");
    w.ok(&["pod", "create", "--name", "mem", "--network", "none", "--memory", "64m"]);
    let id = pod_id(&w, "mem");
    let dirs = pod_dirs(&w, "mem");
    let limit_file = if dirs.iter().any(|d| d.join("memory.limit_in_bytes").exists()) {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    let mem = with_file(&dirs, limit_file);
    assert_eq!(read(&mem, limit_file), (64 << 20).to_string());
    assert_eq!(inspect(&w, "mem")["cgroup"]["MemoryLimit"], 64 << 20);

    let (code, out, err) = run_in(&w, "mem", HOG_40M);
    assert_eq!((code, out.trim()), (0, "41943040"), "the hog alone should fit: {err}");

    w.ok(&["run", "-d", "--pod", "mem", "--name", "holder", "busybox", "sh", "-c", HOLD_40M]);
    let usage = if limit_file == "memory.max" { "memory.current" } else { "memory.usage_in_bytes" };
    wait_until("the holder to hold 40 MiB", || read(&mem, usage).parse::<u64>().unwrap() > 40 << 20);
    // Nested: each of the holder's groups is `<pod's>/<container id>`.
    let holder = pid_of(&w, "holder");
    let own = std::fs::read_to_string(format!("/proc/{holder}/cgroup")).unwrap();
    let mem_line = own
        .lines()
        .find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")) || l.starts_with("0::"))
        .unwrap();
    assert!(mem_line.contains(&format!("/rcon/pod-{id}/")), "holder not inside the pod's group: {own}");

    let (code, out, err) = run_in(&w, "mem", HOG_40M);
    assert_eq!(code, 137, "the hog beside the holder should be OOM-killed: {out}{err}");
    assert!(pid_alive(holder), "the holder should have lived");
    w.ok(&["pod", "rm", "-f", "mem"]);
    assert_no_pod_group(&id);
}

/// Pod `--pids-limit 30`: the processes of a second container's fork loop
/// stop where the pod's total (the pause process and the first container's
/// processes included) reaches 30, not at the loop's 100.
#[test]
fn pids_limit_counts_every_container_of_the_pod() {
    let w = world_with_busybox("pcp");
    w.ok(&["pod", "create", "--name", "pids", "--network", "none", "--pids-limit", "30"]);
    let id = pod_id(&w, "pids");
    let pids = with_file(&pod_dirs(&w, "pids"), "pids.max");
    assert_eq!(read(&pids, "pids.max"), "30");
    // The pause process was born in the pod's `pause` groups: cgroup2's and the pids hierarchy's.
    let pause = inspect(&w, "pids")["pause"]["pid"].as_i64().unwrap();
    let groups = std::fs::read_to_string(format!("/proc/{pause}/cgroup")).unwrap();
    let want = format!("/rcon/pod-{id}/pause");
    for hierarchy in ["0::", ":pids:"] {
        let line = groups.lines().find(|l| l.contains(hierarchy)).unwrap_or_else(|| panic!("{hierarchy}: {groups}"));
        assert!(line.ends_with(&want), "the pause is not in its group: {line}");
    }
    w.ok(&[
        "run",
        "-d",
        "--pod",
        "pids",
        "--name",
        "first",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; wait",
    ]);
    // The pause process, the shell and its 8 sleeps.
    wait_until("the first container's 9 processes", || read(&pids, "pids.current") == "10");
    let (_, out, err) = run_in(&w, "pids", "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); echo $i; done");
    let forked: u32 = out.lines().last().unwrap_or("0").parse().unwrap();
    assert!(err.contains("can't fork"), "the loop should have hit the limit: {err}");
    // 10 before, the loop's shell, its sleeps: at most 30 (fewer if a
    // process of the launch was still there).
    assert!((1..=19).contains(&forked), "forked {forked} with 10 of 30 taken");
    w.ok(&["pod", "rm", "-f", "pids"]);
    assert_no_pod_group(&id);
}

/// An OCI bundle whose annotation names the pod nests in the pod's groups,
/// as `run --pod` does; one whose config names its own cgroupsPath stays there.
#[test]
fn oci_bundle_of_a_pod_nests_unless_it_names_its_cgroup() {
    let w = world_with_busybox("pco");
    w.ok(&["pod", "create", "--name", "oci", "--network", "none", "--pids-limit", "50"]);
    let id = pod_id(&w, "oci");
    let pids = with_file(&pod_dirs(&w, "oci"), "pids.max");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["annotations"] = json!({"rcon.pod": "oci"});
    });
    let c = w.id("c");
    w.ok_files(&["create", "--bundle", b.to_str().unwrap(), &c]);
    let st = w.state_of(&c);
    let v1: Vec<&str> = st["v1Cgroups"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(v1.contains(&pids.join(&c).to_str().unwrap()), "not in the pod's pids group: {st}");
    assert!(st["cgroup"].as_str().unwrap().ends_with(&format!("/rcon/pod-{id}/{c}")), "{st}");
    // The pod lists it as a member, and pod rm removes it with the groups.
    assert!(inspect(&w, "oci")["containers"].to_string().contains(&c));
    let own = format!("{}own", w.name);
    let b2 = w.bundle("b2", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["annotations"] = json!({"rcon.pod": "oci"});
        v["linux"]["cgroupsPath"] = json!(format!("/rcon/{own}"));
    });
    let c2 = w.id("c2");
    w.ok_files(&["create", "--bundle", b2.to_str().unwrap(), &c2]);
    assert!(w.state_of(&c2)["cgroup"].as_str().unwrap().ends_with(&format!("/rcon/{own}")));
    w.ok(&["pod", "rm", "-f", "oci"]);
    assert_no_pod_group(&id);
    assert_clean(&w, &[&b, &b2]);
}

/// `pod rm` with a running member, and `gc` after rcon is killed at each
/// point of `pod create` (the new pod:cgroup one included): no group is
/// left under any hierarchy.
#[test]
fn pod_rm_and_gc_leave_no_group() {
    let w = world_with_busybox("pcg");
    w.ok(&[
        "pod",
        "create",
        "--name",
        "full",
        "--network",
        "none",
        "--memory",
        "32m",
        "--pids-limit",
        "40",
        "--cpus",
        "0.5",
    ]);
    let id = pod_id(&w, "full");
    assert_eq!(pod_dirs(&w, "full").len(), 4, "cgroup2 and memory, pids, cpu on this host's layout");
    w.ok(&["run", "-d", "--pod", "full", "--name", "member", "busybox", "sleep", "1000"]);
    w.ok(&["pod", "rm", "-f", "full"]);
    assert_no_pod_group(&id);

    for point in ["pod:recorded", "pod:cgroup", "pod:netns", "pod:paused", "pod:attached"] {
        let out = w
            .cmd(&["pod", "create", "--name", "half", "--network", "none", "--memory", "32m", "--pids-limit", "40"])
            .env("RCON_FAULT", point)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
        let record: Value =
            serde_json::from_slice(&std::fs::read(w.data_root.join("pods/half.json")).unwrap()).unwrap();
        let id = record["id"].as_str().unwrap().to_string();
        let report = w.ok(&["gc"]);
        assert!(report.contains("removed pod half"), "{point}: {report}");
        assert_no_pod_group(&id);
    }
}

/// The pod groups under any hierarchy that no pod record of any world names
/// (a create is recorded before its groups are made, and its groups are
/// removed before its record).
fn unowned_pod_groups() -> Vec<PathBuf> {
    let records: String = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rcon-"))
        .flat_map(|e| std::fs::read_dir(e.path().join("lib/pods")).into_iter().flatten().flatten())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    cgroup_mounts()
        .iter()
        .flat_map(|m| std::fs::read_dir(m.join("rcon")).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pod-"))
        .filter(|e| !records.contains(e.file_name().to_string_lossy().trim_start_matches("pod-")))
        .map(|e| e.path())
        .filter(|p| p.exists())
        .collect()
}

/// Bad limits: one line each, the same as `rcon run`'s, and no record,
/// netns or group is left.
#[test]
fn bad_pod_limits_leave_nothing() {
    let w = world_with_busybox("pcx");
    // Another run's leftovers (a crashed test's) are not this test's to judge.
    let before = unowned_pod_groups();
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "12q"], "--memory \"12q\": not a size"),
        (&["--memory", "1m"], "the minimum memory limit is 6MB"),
        (&["--memory-swap", "64m"], "--memory-swap needs --memory"),
        (&["--memory", "64m", "--memory-swap", "32m"], "must be at least --memory"),
        (&["--cpus", "999"], "the range of CPUs is from 0.01"),
        (&["--cpuset-cpus", "999"], "CPU 999 is not available"),
        (&["--cpu-shares", "1"], "--cpu-shares 1: must be from 2 to 262144"),
        (&["--pids-limit", "many"], "--pids-limit"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["pod", "create", "--name", "bad", "--network", "none"];
        args.extend_from_slice(flags);
        let err = w.fails(&args);
        assert!(err.contains(want), "{flags:?}: {err}");
        // The same line as `rcon run` gives for the flag.
        let mut run = vec!["run", "--rm"];
        run.extend_from_slice(flags);
        run.extend(["busybox", "true"]);
        let run_err = w.fails(&run);
        assert!(run_err.contains(want), "{flags:?}: run says {run_err}");
    }
    let records = std::fs::read_dir(w.data_root.join("pods")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(records, 0, "a pod record is left");
    let netns = std::fs::read_dir(&w.netns_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(netns, 0, "a netns is left");
    let left: Vec<PathBuf> = unowned_pod_groups().into_iter().filter(|g| !before.contains(g)).collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "pod groups left");
}
