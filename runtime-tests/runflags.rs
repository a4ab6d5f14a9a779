//! Docker's confinement flags of `rcon run` and its default masks, each
//! seen from inside a container by a real process; the resource flags in
//! the config rcon writes and in `inspect`; bad flags refused whole.

use serde_json::Value;

use crate::common::World;
use crate::dockerrun::{assert_nothing_left, world_with_busybox};

/// `rcon run --rm FLAGS… busybox sh -c SCRIPT`: (exit status, stdout, stderr).
fn run_sh(w: &World, flags: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let out = w.rcon(&args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The output of a script that must succeed.
fn ok_sh(w: &World, flags: &[&str], script: &str) -> String {
    let (code, out, err) = run_sh(w, flags, script);
    assert_eq!(code, 0, "{flags:?} {script}: {out}{err}");
    out
}

fn inspect(w: &World, name: &str) -> Value {
    serde_json::from_str(&w.ok(&["inspect", name])).expect("inspect prints JSON")
}

/// The config.json rcon wrote for a container.
fn config_of(w: &World, id: &str) -> Value {
    let path = w.data_root.join("containers").join(id).join("config.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn volumes_tmpfs_and_a_read_only_root() {
    let w = world_with_busybox("rfvol");
    let host = w.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "from-host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let out = ok_sh(&w, &["-v", &ro], "cat /data/f; touch /data/new 2>/dev/null && echo wrote || echo refused");
    assert_eq!(out, "from-host\nrefused\n");
    assert!(!host.join("new").exists());
    let rw = format!("{}:/data", host.display());
    assert_eq!(ok_sh(&w, &["-v", &rw], "echo in > /data/new && echo wrote"), "wrote\n");
    assert_eq!(std::fs::read_to_string(host.join("new")).unwrap(), "in\n");
    // --mount's bind, read-only.
    let m = format!("type=bind,source={},target=/m,readonly", host.display());
    assert_eq!(ok_sh(&w, &["--mount", &m], "cat /m/f; touch /m/x 2>/dev/null || echo refused"), "from-host\nrefused\n");
    // --tmpfs: a tmpfs with docker's noexec,nosuid,nodev; --mount's tmpfs with its size.
    let out = ok_sh(
        &w,
        &["--tmpfs", "/scratch", "--mount", "type=tmpfs,target=/sized,tmpfs-size=1m"],
        "grep -E ' /(scratch|sized) ' /proc/mounts",
    );
    let scratch = out.lines().find(|l| l.contains(" /scratch ")).unwrap_or_else(|| panic!("{out}"));
    assert!(scratch.starts_with("tmpfs /scratch tmpfs rw,"), "{scratch}");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(scratch.contains(o), "{scratch}");
    }
    assert!(out.lines().any(|l| l.contains(" /sized ") && l.contains("size=1024k")), "{out}");
    // --read-only: the root refuses writes, a tmpfs on it still takes them.
    let out = ok_sh(
        &w,
        &["--read-only", "--tmpfs", "/scratch"],
        "touch /x 2>/dev/null && echo wrote-root || echo root-refused; touch /scratch/y && echo wrote-tmpfs",
    );
    assert_eq!(out, "root-refused\nwrote-tmpfs\n");
    assert_eq!(ok_sh(&w, &[], "touch /x && echo wrote-root"), "wrote-root\n");
}

#[test]
fn capabilities_decide_ping_and_link_changes() {
    let w = world_with_busybox("rfcap");
    // Ping the network's gateway, inside the node: NET_RAW is docker's default.
    let ping =
        "ping -c 1 -W 5 $(ip route | awk '/^default/ {print $3}') >/dev/null 2>&1 && echo pinged || echo no-ping";
    assert_eq!(ok_sh(&w, &[], ping), "pinged\n");
    assert_eq!(ok_sh(&w, &["--cap-drop", "NET_RAW"], ping), "no-ping\n");
    assert_eq!(ok_sh(&w, &["--cap-drop", "all"], ping), "no-ping\n");
    // NET_ADMIN is not a default; --cap-add gives it (in the container's own netns).
    let mtu = "ip link set lo mtu 1000 2>/dev/null && cat /sys/class/net/lo/mtu || echo refused";
    assert_eq!(ok_sh(&w, &[], mtu), "refused\n");
    assert_eq!(ok_sh(&w, &["--cap-add", "NET_ADMIN"], mtu), "1000\n");
    assert_eq!(ok_sh(&w, &["--cap-add", "cap_net_admin"], mtu), "1000\n");
}

#[test]
fn devices_are_given_with_their_numbers_and_others_denied() {
    let w = world_with_busybox("rfdev");
    // The tun node (10:200): open works, a read without an interface is EBADFD.
    let out =
        ok_sh(&w, &["--device", "/dev/net/tun:/dev/tun0"], "stat -c '%F %t:%T' /dev/tun0; cat /dev/tun0 2>&1; true");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("character special file a:c8"), "{out}");
    assert!(out.contains("bad state"), "{out}");
    // Without --device, the same node made by mknod cannot be opened: the
    // default allowlist lets mknod through but not access.
    let out = ok_sh(&w, &[], "mknod /tmp/tun c 10 200 && cat /tmp/tun 2>&1; true");
    assert!(out.contains("Operation not permitted"), "{out}");
    // Read-only access: opening for writing is refused.
    let out = ok_sh(&w, &["--device", "/dev/net/tun:/dev/tun0:r"], "echo x > /dev/tun0 2>&1 || echo write-refused");
    assert!(out.contains("write-refused"), "{out}");
}

#[test]
fn ulimits_and_a_pids_limit_hold() {
    let w = world_with_busybox("rfulim");
    assert_eq!(ok_sh(&w, &["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -Hn"), "100\n200\n");
    // A fork loop: 40 sleepers without a limit, far fewer under --pids-limit 20.
    let spawn = "i=0; while [ $i -lt 40 ]; do sleep 1000 & i=$((i+1)); echo $i; done";
    let (code, out, err) = run_sh(&w, &[], spawn);
    assert_eq!((code, out.lines().last()), (0, Some("40")), "{err}");
    let (code, out, err) = run_sh(&w, &["--pids-limit", "20"], spawn);
    let started: u32 = out.lines().last().unwrap_or("0").parse().unwrap();
    assert!(code != 0 && started < 20, "code {code}, started {started}: {err}");
    assert!(err.contains("fork"), "{err}");
}

#[test]
fn default_masks_and_what_privileged_lifts() {
    let w = world_with_busybox("rfmask");
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    // ip_forward here is the container's own netns's (a fresh /proc in its namespaces).
    // /proc/keys stands for the masked files: this kernel has no /proc/kcore.
    let probe = "wc -c < /proc/keys; grep -c -E ' /proc/keys | /sys/firmware ' /proc/self/mountinfo; \
                 echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo sys-writable || echo sys-ro; \
                 cat /proc/sys/net/ipv4/ip_forward";
    let out = ok_sh(&w, &[], probe);
    // Read after the first run, which made the bridge network (forwarding on in the node).
    let node_forward = w.sh_in(w.node.as_ref().unwrap(), "cat /proc/sys/net/ipv4/ip_forward");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "0", "/proc/keys is not empty: {out}");
    assert_eq!(lines[1..], ["2", "sys-ro", "0"], "{out}");
    let (code, out, err) = run_sh(
        &w,
        &["--privileged"],
        "grep -c -E ' /proc/keys | /sys/firmware ' /proc/self/mountinfo; \
         echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward; grep CapEff /proc/self/status",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["0", "1"], "code {code}: {out}{err}");
    // Every capability rcon has itself.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = own.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim();
    assert_eq!(lines[2].strip_prefix("CapEff:").map(str::trim), Some(bounding), "{out}");
    // Neither the node's nor the machine's forwarding moved.
    assert_eq!(w.sh_in(w.node.as_ref().unwrap(), "cat /proc/sys/net/ipv4/ip_forward"), node_forward);
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host_forward);
}

#[test]
fn flags_show_in_the_config_and_in_inspect() {
    let w = world_with_busybox("rfinsp");
    let host = w.dir.path().join("vol");
    std::fs::create_dir(&host).unwrap();
    let vol = format!("{}:/data:ro", host.display());
    let id = w
        .ok(&[
            "run",
            "-d",
            "--name",
            "conf",
            "--pids-limit",
            "50",
            "--ulimit",
            "nofile=100:200",
            "--device",
            "/dev/net/tun",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "net_raw",
            "--read-only",
            "--tmpfs",
            "/scratch:size=1m",
            "-v",
            &vol,
            "--mount",
            "type=tmpfs,target=/m",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let h = &inspect(&w, "conf")["HostConfig"];
    assert_eq!(h["PidsLimit"], 50);
    assert_eq!(h["Ulimits"], serde_json::json!([{"Name": "nofile", "Soft": 100, "Hard": 200}]));
    assert_eq!(h["Devices"][0]["PathOnHost"], "/dev/net/tun");
    assert_eq!(h["Devices"][0]["CgroupPermissions"], "rwm");
    assert_eq!((&h["CapAdd"][0], &h["CapDrop"][0]), (&"CAP_NET_ADMIN".into(), &"CAP_NET_RAW".into()));
    assert_eq!((&h["Privileged"], &h["ReadonlyRootfs"]), (&false.into(), &true.into()));
    assert_eq!(h["Tmpfs"]["/scratch"], "size=1m");
    assert_eq!(h["Binds"][0], vol.as_str());
    assert_eq!(h["Mounts"][0]["Target"], "/m");
    let c = config_of(&w, &id);
    assert_eq!(c["linux"]["resources"]["pids"]["limit"], 50);
    assert!(c["process"]["rlimits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["type"] == "RLIMIT_NOFILE" && r["soft"] == 100));
    let caps = c["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".into()) && !caps.contains(&"CAP_NET_RAW".into()), "{caps:?}");
    assert_eq!(c["root"]["readonly"], true);
    // The kernel holds the container to them.
    let pid = w.state_of(&id)["pid"].as_i64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().eq(["Max", "open", "files", "100", "200", "files"])),
        "{limits}"
    );
    w.ok(&["rm", "-f", "conf"]);
    assert_nothing_left(&w, &id);
}

/// Memory and CPU limits go into linux.resources as docker and runc write
/// them. The config is read from a run stopped (by a fault point) right
/// after writing it, since applying those limits is another change's work.
#[test]
fn resource_flags_are_written_as_runc_reads_them() {
    let w = world_with_busybox("rfres");
    let flags = [
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "20",
    ];
    let mut args = vec!["run", "-d", "--name", "res"];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&["busybox", "sleep", "1000"]);
    let out = w.cmd(&args).env("RCON_FAULT", "run:mounted").output().unwrap();
    assert_eq!(out.status.code(), None, "the run should have been stopped at its fault point: {out:?}");
    let ids: Vec<String> = std::fs::read_dir(w.data_root.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let [id] = ids.as_slice() else { panic!("one container dir expected: {ids:?}") };
    let r = &config_of(&w, id)["linux"]["resources"];
    assert_eq!(r["memory"], serde_json::json!({"limit": 64 << 20, "swap": 128 << 20}));
    assert_eq!(r["cpu"], serde_json::json!({"quota": 50_000, "period": 100_000, "shares": 512, "cpus": "0"}));
    assert_eq!(r["pids"]["limit"], 20);
    assert_eq!(r["devices"][0], serde_json::json!({"allow": false, "access": "rwm"}));
    let hc: Value =
        serde_json::from_str(config_of(&w, id)["annotations"]["rcon.host-config"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&hc["Memory"], &hc["MemorySwap"], &hc["NanoCpus"]),
        (&(64 << 20).into(), &(128 << 20).into(), &500_000_000.into())
    );
    w.ok(&["gc"]);
    assert_nothing_left(&w, id);
    // A real run: the runtime applies them (inspect shows them) or refuses them
    // by name at create, leaving nothing; never silence.
    let out = w.rcon(&args);
    if out.status.success() {
        let h = &inspect(&w, "res")["HostConfig"];
        assert_eq!((&h["Memory"], &h["CpusetCpus"]), (&(64 << 20).into(), &"0".into()));
        w.ok(&["rm", "-f", "res"]);
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("linux.resources.") && err.trim_end().lines().count() == 1, "{err}");
        assert!(w.containers().iter().all(|c| c.starts_with('.')), "{:?}", w.containers());
        let dirs = std::fs::read_dir(w.data_root.join("containers")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(dirs, 0, "a refused run left its data dir");
    }
}

#[test]
fn bad_flags_are_refused_whole() {
    let w = world_with_busybox("rfbad");
    let file = w.dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let plain = file.to_str().unwrap();
    let links_before = w.sh_in(w.node.as_ref().unwrap(), "ip -o link | wc -l");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-v".into(), "rel/dir:/d".into()], "not an absolute host path"),
        (vec!["-v".into(), "/no/such/dir:/d".into()], "does not exist"),
        (vec!["-v".into(), "named:/d".into()], "no named volumes"),
        (vec!["-m".into(), "12q".into()], "--memory \"12q\": not a size"),
        (vec!["-m".into(), "1m".into()], "minimum memory limit is 6MB"),
        (vec!["-m".into(), "64m".into(), "--memory-swap".into(), "32m".into()], "must be at least --memory"),
        (vec!["--memory-swap".into(), "1g".into()], "needs --memory"),
        (vec!["--device".into(), plain.into()], "is not a device node"),
        (vec!["--device".into(), "/dev/nope".into()], "does not exist"),
        (vec!["--cap-add".into(), "FLY".into()], "unknown capability \"CAP_FLY\""),
        (vec!["--mount".into(), "type=bind,source=/tmp,target=/t,colour=red".into()], "unknown key \"colour\""),
        (vec!["--mount".into(), "type=volume,source=v,target=/t".into()], "type \"volume\" is not supported"),
        (vec!["--cpus".into(), "64".into()], "the range of CPUs"),
        (vec!["--cpuset-cpus".into(), "0-".into()], "not a list of CPUs"),
        (vec!["--ulimit".into(), "nofile=200:100".into()], "above the hard limit"),
        (vec!["--tmpfs".into(), "scratch".into()], "must be absolute"),
    ];
    for (flags, want) in &cases {
        let mut args: Vec<&str> = vec!["run", "--rm"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["busybox", "true"]);
        let err = w.fails(&args);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    assert!(w.containers().iter().all(|c| c.starts_with('.')), "{:?}", w.containers());
    let dirs = std::fs::read_dir(w.data_root.join("containers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(dirs, 0, "a container dir was left");
    assert_eq!(w.sh_in(w.node.as_ref().unwrap(), "ip -o link | wc -l"), links_before, "a link was left");
    let names = std::fs::read_dir(w.root.join(".names")).map(|rd| rd.count()).unwrap_or(0);
    assert_eq!(names, 0, "a name reservation left");
    // With --bundle, config.json decides: the flags are refused.
    let err = w.fails(&["run", "--bundle", "/nonexistent", "--read-only", "x"]);
    assert!(err.contains("--read-only is for images"), "{err}");
}
