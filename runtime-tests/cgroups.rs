//! `linux.resources` applied through cgroups, proved by behaviour: a memory
//! hog dies at its limit (and lives once `update` raises it), a busy loop
//! under a 50% quota gets about half a CPU by the group's own counter, every
//! field reads back from the kernel's files, what the host lacks fails
//! `create` cleanly, and delete and gc leave no group under any hierarchy.
//! Only groups rcon makes (`rcon/<id>`) are ever read or written.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;

use crate::common::*;

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// Allocates about 64 MiB in the shell itself (the OOM killer's pick).
const HOG: &str = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}";

/// Every cgroup mount (v1 hierarchies and cgroup2) of this host.
pub(crate) fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right.starts_with("cgroup").then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
        })
        .collect()
}

fn assert_no_group(id: &str) {
    for m in cgroup_mounts() {
        let g = m.join("rcon").join(id);
        assert!(!g.exists(), "{} is left", g.display());
    }
}

/// The container's groups from its state: the cgroup2 dir and the v1 ones.
fn groups(w: &World, id: &str) -> (PathBuf, Vec<PathBuf>) {
    let st = w.state_of(id);
    let v2 = PathBuf::from(st["cgroup"].as_str().expect("a cgroup2 dir"));
    let v1 = st["v1Cgroups"].as_array().map(|a| a.iter().map(|p| PathBuf::from(p.as_str().unwrap())).collect());
    (v2, v1.unwrap_or_default())
}

/// `file` of the container's group that has it.
fn read(groups: &(PathBuf, Vec<PathBuf>), file: &str) -> String {
    let dir = groups.1.iter().chain([&groups.0]).find(|d| d.join(file).exists());
    let dir = dir.unwrap_or_else(|| panic!("no group has {file}: {groups:?}"));
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
}

fn cpu_usage_usec(v2: &Path) -> u64 {
    let stat = std::fs::read_to_string(v2.join("cpu.stat")).unwrap();
    stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).unwrap().parse().unwrap()
}

/// A hog under 32 MiB is OOM-killed: `run` exits 137, and a created
/// container's state, ps row and inspect say OOMKilled.
#[test]
fn memory_hog_is_oom_killed() {
    let w = World::new("cgoom");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sh", "-c", HOG]);
        v["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}});
    });
    let id = w.id("run");
    let out = w.rcon_files(&["run", "--bundle", p(&b), &id]);
    assert_eq!(out.status.code(), Some(137), "{}{}", out.stdout, out.stderr);
    assert_no_group(&id);

    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let g = groups(&w, &id);
    assert_eq!(read(&g, "memory.limit_in_bytes"), (32 << 20).to_string());
    w.ok(&["start", &id]);
    wait_until("the hog to die", || w.state_of(&id)["status"] == "stopped");
    assert_eq!(w.state_of(&id)["oomKilled"], true);
    let rows: serde_json::Value = serde_json::from_str(&w.ok(&["ps", "--format", "json"])).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap().clone();
    assert!(row["status"].as_str().unwrap().contains("OOMKilled"), "{row}");
    let inspect: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", &id])).unwrap();
    assert_eq!(inspect["oomKilled"], true);
    w.ok(&["delete", &id]);
    assert_no_group(&id);
    assert_clean(&w, &[&b]);
}

/// `update --memory` raises the limit of a running container: the hog that
/// dies at 32 MiB lives at 256 MiB. `update -r -` takes runc's JSON on stdin.
/// OOM events stream meanwhile. A stopped container is refused.
#[test]
fn update_raises_limits_and_events_report_oom() {
    let w = World::new("cgupd");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["linux"]["resources"] = json!({"memory": {"limit": 32 << 20}});
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    w.ok(&["start", &id]);
    let g = groups(&w, &id);
    let mut events =
        w.cmd(&["events", "--interval", "500ms", &id]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    // The first stats event: the OOM watch is in place from here on.
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "stats", "{first}");
    let dies = w.rcon_files(&["exec", &id, "sh", "-c", HOG]);
    assert_eq!(dies.status.code(), Some(137), "{}{}", dies.stdout, dies.stderr);

    w.ok(&["update", "--memory", "256m", &id]);
    assert_eq!(read(&g, "memory.limit_in_bytes"), (256 << 20).to_string());
    let lives = w.ok_files(&["exec", &id, "sh", "-c", HOG]);
    assert_eq!(lives.stdout.trim(), (64 << 20).to_string());

    let mut c = w.cmd(&["update", "-r", "-", &id]).stdin(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(br#"{"memory": {"limit": 100663296}, "pids": {"limit": 50}}"#).unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(read(&g, "memory.limit_in_bytes"), "100663296");
    // The container had no pids group: update made one, recorded it and moved the container in.
    let g = groups(&w, &id);
    assert_eq!(read(&g, "pids.max"), "50");
    let pids_group = g.1.iter().find(|d| d.join("pids.max").exists()).unwrap().clone();
    let members = std::fs::read_to_string(pids_group.join("cgroup.procs")).unwrap();
    let init = w.state_of(&id)["pid"].to_string();
    assert!(members.lines().any(|l| l.trim() == init), "{members}");

    w.ok(&["kill", &id, "KILL"]);
    // The stream ends with the container.
    let rest: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert!(events.wait().unwrap().success());
    let ooms = rest.iter().filter(|e| **e == json!({"type": "oom", "id": id})).count();
    assert!(ooms >= 1, "{rest:?}");

    let err = w.fails(&["update", "--memory", "64m", &id]);
    assert!(err.contains("is stopped") && err.contains("update needs"), "{err}");
    w.ok(&["delete", &id]);
    assert_no_group(&id);
    assert_clean(&w, &[&b]);
}

/// A busy loop under quota 50000/100000 gets about half a CPU, by the
/// group's own usage counter against the wall clock between two reads (a
/// wide band: this measures the kernel's throttling, not rcon). `events
/// --stats` shows the usage growing.
#[test]
fn cpu_quota_gives_half_a_cpu_and_stats_move() {
    let w = World::new("cgcpu");
    let b = w.bundle("b", |v| {
        // Two loops ask for two CPUs, so the quota, not the machine's other
        // work (CI runs tests side by side), is what holds them to half of one.
        v["process"]["args"] = json!(["sh", "-c", "while :; do :; done & while :; do :; done"]);
        v["linux"]["resources"] = json!({"cpu": {"quota": 50000, "period": 100000}});
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    w.ok(&["start", &id]);
    let g = groups(&w, &id);
    assert_eq!(read(&g, "cpu.cfs_quota_us"), "50000");
    let stats = |w: &World| -> serde_json::Value { serde_json::from_str(&w.ok(&["events", "--stats", &id])).unwrap() };
    let first = stats(&w);
    assert_eq!(first["type"], "stats");
    assert_eq!(first["id"], id.as_str());
    let (u0, t0) = (cpu_usage_usec(&g.0), std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (u1, t1) = (cpu_usage_usec(&g.0), std::time::Instant::now());
    let share = (u1 - u0) as f64 / (t1 - t0).as_micros() as f64;
    assert!((0.25..0.65).contains(&share), "two loops got {share:.2} of a CPU under a 50% quota");
    let second = stats(&w);
    let total = |s: &serde_json::Value| s["data"]["cpu"]["usage"]["total"].as_u64().unwrap();
    assert!(total(&second) > total(&first), "{first}\n{second}");
    // The quota is in force: the kernel counts its periods. (Whether a
    // period was throttled depends on the machine's other load, so the
    // share above is the proof of the limit.)
    assert!(second["data"]["cpu"]["throttling"]["periods"].as_u64().unwrap() > 0, "{second}");
    assert!(second["data"]["pids"]["current"].as_u64().unwrap() >= 1, "{second}");
    w.ok(&["delete", "--force", &id]);
    assert_no_group(&id);
    assert_clean(&w, &[&b]);
}

/// Every field this host can apply reads back from the kernel's files.
#[test]
fn every_field_reads_back() {
    let w = World::new("cgall");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["linux"]["resources"] = json!({
            "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10,
                       "kernelTCP": 16 << 20},
            "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
        });
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    let g = groups(&w, &id);
    for (file, want) in [
        ("memory.limit_in_bytes", (64 << 20).to_string()),
        ("memory.soft_limit_in_bytes", (32 << 20).to_string()),
        ("memory.memsw.limit_in_bytes", (128 << 20).to_string()),
        ("memory.swappiness", "10".into()),
        ("memory.kmem.tcp.limit_in_bytes", (16 << 20).to_string()),
        ("cpu.shares", "512".into()),
        ("cpu.cfs_quota_us", "20000".into()),
        ("cpu.cfs_period_us", "50000".into()),
        ("cpuset.cpus", "0".into()),
        ("cpuset.mems", "0".into()),
        ("pids.max", "32".into()),
        ("blkio.throttle.read_bps_device", "254:0 1048576".into()),
    ] {
        assert_eq!(read(&g, file), want, "{file}");
    }
    // The init is in every group.
    let pid = w.state_of(&id)["pid"].to_string();
    for dir in &g.1 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == pid), "{} lacks the init", dir.display());
    }
    w.ok(&["delete", "--force", &id]);
    assert_no_group(&id);
    assert_clean(&w, &[&b]);
}

/// A field this host cannot apply fails create with one line naming it,
/// and leaves no group, no state.
#[test]
fn what_the_host_lacks_fails_create_cleanly() {
    let w = World::new("cgno");
    let cases = [
        // No rdma controller in either hierarchy here (hugetlb is offered by
        // cgroup2's root, so hugepageLimits apply).
        (
            json!({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}}),
            "linux.resources.rdma: needs the rdma controller",
        ),
        (
            json!({"network": {"classID": 1048577}}),
            "linux.resources.network.classID: needs the cgroup v1 net_cls controller",
        ),
        (json!({"memory": {"kernel": 1048576}}), "linux.resources.memory.kernel: kernel memory limits"),
        (
            json!({"unified": {"memory.high": "1G"}}),
            "linux.resources.unified.memory.high: the memory controller is not in",
        ),
        // A pids limit (applied) beside it must leave no pids group either.
        (
            json!({"pids": {"limit": 10}, "blockIO": {"weight": 500}}),
            "linux.resources.blockIO.weight: this host has no blkio.weight",
        ),
    ];
    for (i, (resources, want)) in cases.into_iter().enumerate() {
        let has_bfq = Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
            || Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists();
        if want.contains("blkio.weight") && has_bfq {
            continue;
        }
        let b = w.bundle(&format!("b{i}"), |v| v["linux"]["resources"] = resources);
        let id = w.id(&format!("c{i}"));
        let err = w.fails_files(&["create", "--bundle", p(&b), &id]);
        assert!(err.contains(want), "{err}");
        assert!(w.containers().is_empty(), "state left: {:?}", w.containers());
        assert_no_group(&id);
    }
    let b = w.bundle("sd", |v| v["linux"]["cgroupsPath"] = "system.slice:rcon:x".into());
    let err = w.fails_files(&["create", "--bundle", p(&b), &w.id("sd")]);
    assert!(err.contains("systemd's slice:prefix:name form"), "{err}");
}

/// A delete killed after it ended the container's processes is finished by
/// gc, which removes the groups under every hierarchy.
#[test]
fn gc_removes_the_groups_of_a_killed_delete() {
    let w = World::new("cggc");
    let b = w.bundle("b", |v| {
        v["process"]["args"] = json!(["sleep", "1000"]);
        v["linux"]["resources"] =
            json!({"memory": {"limit": 64 << 20}, "cpu": {"shares": 256, "cpus": "0"}, "pids": {"limit": 20}});
    });
    let id = w.id("c");
    w.ok_files(&["create", "--bundle", p(&b), &id]);
    w.ok(&["start", &id]);
    let g = groups(&w, &id);
    assert_eq!(g.1.len(), 4, "{g:?}");
    let killed = w.cmd(&["delete", "--force", &id]).env("RCON_FAULT", "delete:killed").output().unwrap();
    assert!(!killed.status.success());
    assert!(g.0.exists(), "the fault should strike before the groups go");
    w.ok(&["gc"]);
    assert_no_group(&id);
    assert_clean(&w, &[&b]);
}
