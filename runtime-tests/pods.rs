//! Pod sandboxes: the built-in pause process; containers of one pod sharing
//! a netns (with ipc and uts, and pid on request) over real TCP; published
//! pod ports; the routed driver; a dead pause process; a killed `pod
//! create`; bad input; and 100 pods leaking nothing.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{mountinfo_lines, pid_alive, resolver_pid, sh, wait_pid_gone, wait_until, World};
use crate::network::{lease_count, net_world, NetWorld, UPLINK_INET, UPLINK_NODE};
use crate::ports::{port_rules, tcp_from};

/// Children of `pid` in state Z (zombies).
fn zombies_of(pid: u32) -> usize {
    sh(&format!("ps -o stat= --ppid {pid} || true")).lines().filter(|l| l.trim_start().starts_with('Z')).count()
}

/// The pause of a pod with a pid namespace of its own (a fork of `pod create`, its pid 1) reads
/// `rcon pause` on its command line, reaps the orphans that land on it, and ends on TERM.
#[test]
fn pause_reaps_orphans_and_ends_on_term() {
    let nw = net_world("pz", "nftables");
    nw.w.ok(&["pod", "create", "--name", "reaper", "--share", "pid"]);
    let pause = inspect(&nw.w, "reaper")["pause"]["pid"].as_i64().unwrap() as u32;
    assert_eq!(sh(&format!("tr '\\0' ' ' </proc/{pause}/cmdline")).trim(), "rcon pause");
    // It holds no capability and can gain none, though its creator was root with all of them.
    let status = std::fs::read_to_string(format!("/proc/{pause}/status")).unwrap();
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).unwrap_or("?").to_string();
    let zero = "0000000000000000";
    assert_eq!([field("CapEff:"), field("CapPrm:"), field("CapInh:"), field("NoNewPrivs:")], [zero, zero, zero, "1"]);
    // Yet a root process without CAP_SYS_PTRACE (a pod member's) cannot reach into it: its
    // namespace links (the host's mount namespace among them) take ptrace access, which a process
    // that is not dumpable denies to such a caller. A capability-less dumpable pause would let it.
    let peek = Command::new("setpriv")
        .args(["--bounding-set", "-sys_ptrace", "readlink", &format!("/proc/{pause}/ns/mnt")])
        .output()
        .unwrap();
    assert!(!peek.status.success() && peek.stdout.is_empty(), "the pause's ns/mnt was read: {peek:?}");
    // Orphans: their parent exits at once, so they land on the pause process.
    sh(&format!("nsenter --target {pause} --pid -- sh -c 'sleep 0.2 & sleep 0.3 & exit 0'"));
    wait_until("the orphans to be adopted and to end", || {
        sh(&format!("ps -o pid= --ppid {pause} || true")).trim().is_empty()
    });
    assert_eq!(zombies_of(pause), 0, "the pause process left zombies");
    sh(&format!("kill -TERM {pause}"));
    wait_pid_gone(pause as i32);
    nw.w.ok(&["pod", "rm", "reaper"]);
}

/// A pod's record as `pod inspect` prints it.
pub(crate) fn inspect(w: &World, pod: &str) -> Value {
    serde_json::from_str(&w.ok(&["pod", "inspect", pod])).unwrap()
}

/// The pod's address, without the prefix length.
fn pod_ip(w: &World, pod: &str) -> String {
    inspect(w, pod)["endpoints"][0]["ip"].as_str().expect("the pod has an address").to_string()
}

/// What a container sees of itself: address, MAC, and its net, ipc and uts namespaces.
const IDENTITY: &str = "ip -o -4 addr show eth0 | awk '{print $4}'; cat /sys/class/net/eth0/address; \
                        for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname";

/// Everything a pod can leave in a node: links, netns files and mounts of
/// the netns dir, leases on `net`, pod records, published-port rules.
fn footprint(nw: &NetWorld, net: &str, netns_dir: &Path) -> Vec<String> {
    let dir = netns_dir.to_str().unwrap();
    let ours = |name: &str| netns_dir != Path::new("/var/run/netns") || name.starts_with(&nw.w.name);
    let files: Vec<String> = std::fs::read_dir(netns_dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| ours(n)).collect())
        .unwrap_or_default();
    let mounts = mountinfo_lines(netns_dir).into_iter().filter(|l| l.contains(&format!("{dir}/"))).count();
    vec![
        nw.w.sh_in(nw.node(), "ip -o link | cut -d: -f2 | sort"),
        format!("netns files {files:?}"),
        format!("mounts below the netns dir {mounts}"),
        format!("leases {}", lease_count(&nw.w, net)),
        format!("pods {}", nw.w.ok(&["pod", "ls"]).lines().count() - 1),
        port_rules(nw, "nftables"),
    ]
}

/// Two containers of one pod talk over 127.0.0.1 and see one address, MAC
/// and netns, which `ip netns exec POD` enters too; the pod's published port
/// answers from another host; a container started again gets the same
/// address; a pod whose containers all exited keeps its address and ports;
/// `pod rm` leaves nothing.
#[test]
fn pod_containers_share_one_network_namespace() {
    let mut nw = net_world("pa", "nftables");
    nw.w.use_system_netns_dir();
    let sysdir = Path::new("/var/run/netns");
    nw.w.ok(&["network", "create", "--subnet", "10.30.0.0/24", "pods"]);
    let before = footprint(&nw, "pods", sysdir);
    let pod = format!("{}p", nw.w.name);
    nw.w.ok(&["pod", "create", "--name", &pod, "--network", "pods", "-p", "8080:7000"]);
    let ip = pod_ip(&nw.w, &pod);
    let mac = inspect(&nw.w, &pod)["endpoints"][0]["mac"].as_str().unwrap().to_string();
    let server = |name: &str| {
        let script = format!("{IDENTITY}; exec nc -ll -p 7000 -e echo from-{name}");
        nw.w.ok(&["run", "-d", "--pod", &pod, "--name", name, "busybox", "sh", "-c", &script]);
        wait_until("the server to listen", || {
            nw.w.ok(&["run", "--rm", "--pod", &pod, "busybox", "netstat", "-ltn"]).contains(":7000")
        });
    };
    server("s1");
    let client =
        nw.w.ok(&["run", "--rm", "--pod", &pod, "busybox", "sh", "-c", &format!("{IDENTITY}; nc -w 2 127.0.0.1 7000")]);
    let seen_by_server = nw.w.ok(&["logs", "s1"]);
    assert_eq!(client, format!("{seen_by_server}from-s1\n"), "the two containers see different namespaces");
    let ns_inode = sh(&format!("stat -L -c %i /var/run/netns/{pod}")).trim().to_string();
    let lines: Vec<&str> = seen_by_server.lines().collect();
    assert_eq!(lines[0], format!("{ip}/24"));
    assert_eq!(lines[1], mac);
    assert_eq!(lines[2], format!("net:[{ns_inode}]"));
    assert_eq!(lines[5], pod, "the hostname is the pod's name");
    // The pause process holds the ipc and uts namespaces the containers share.
    let pause = inspect(&nw.w, &pod)["pause"]["pid"].as_i64().unwrap();
    assert_eq!(lines[3], sh(&format!("readlink /proc/{pause}/ns/ipc")).trim());
    assert_eq!(lines[4], sh(&format!("readlink /proc/{pause}/ns/uts")).trim());
    // `ip netns exec` into the pod.
    let addr = sh(&format!("ip netns exec {pod} ip -o -4 addr show eth0"));
    assert!(addr.contains(&format!("inet {ip}/24")), "{addr}");
    // The published port, from another host.
    assert_eq!(tcp_from(&nw, &nw.inet.clone(), UPLINK_NODE, 8080), "from-s1");
    // Restarted, the server has the same address, and the port leads to it.
    nw.w.ok(&["rm", "-f", "s1"]);
    server("s2");
    assert_eq!(nw.w.ok(&["logs", "s2"]).lines().next(), Some(format!("{ip}/24").as_str()));
    assert_eq!(tcp_from(&nw, &nw.inet.clone(), UPLINK_NODE, 8080), "from-s2");
    // A member shows the pod's interface and ports as its own.
    assert_eq!(nw.w.ok(&["port", "s2"]), "7000/tcp -> 0.0.0.0:8080\n");
    assert_eq!(crate::network::ip_of(&nw.w, "s2"), ip);
    let ls = nw.w.ok(&["pod", "ls"]);
    let row = ls.lines().find(|l| l.contains(&pod)).unwrap_or_else(|| panic!("{pod} not listed: {ls}"));
    assert!(row.contains("running") && row.contains(&ip) && row.contains("s2"), "{row}");
    // Every container exited: the pod keeps its address and its port.
    nw.w.ok(&["stop", "-t", "1", "s2"]);
    assert_eq!(pod_ip(&nw.w, &pod), ip);
    assert!(port_rules(&nw, "nftables").contains(&ip), "the port went with the containers");
    assert!(nw.w.sh_in(nw.node(), &format!("busybox ping -c1 -w2 {ip} >/dev/null && echo up")).contains("up"));
    nw.w.ok(&["pod", "rm", &pod]);
    assert_eq!(footprint(&nw, "pods", sysdir), before, "pod rm left something behind");
    assert!(nw.w.ok(&["ps", "-a"]).lines().count() <= 1, "pod rm left its containers");
}

/// `--share pid`: the pause process is pid 1 of the pod, seen by every
/// container; without it each container is pid 1 of its own. The hostname
/// is the pod's.
#[test]
fn pod_shares_pid_namespace_on_request() {
    let nw = net_world("pq", "nftables");
    nw.w.ok(&["pod", "create", "--name", "shared", "--share", "pid", "--hostname", "podhost"]);
    nw.w.ok(&["run", "-d", "--pod", "shared", "--name", "sleeper", "busybox", "sleep", "1000"]);
    let seen = nw.w.ok(&[
        "run",
        "--rm",
        "--pod",
        "shared",
        "busybox",
        "sh",
        "-c",
        "tr '\\0' ' ' </proc/1/cmdline; echo; hostname; ps -o args",
    ]);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0].trim(), "rcon pause", "{seen}");
    assert_eq!(lines[1], "podhost");
    assert!(seen.contains("sleep 1000"), "the other container's process is not visible: {seen}");
    nw.w.ok(&["pod", "create", "--name", "apart"]);
    let own = nw.w.ok(&["run", "--rm", "--pod", "apart", "busybox", "sh", "-c", "echo $$; hostname"]);
    assert_eq!(own, "1\napart\n");
    // pod rm without -f refuses while a container runs; -f stops it.
    let err = nw.w.fails(&["pod", "rm", "shared"]);
    assert!(err.contains("running container"), "{err}");
    let pause = inspect(&nw.w, "shared")["pause"]["pid"].as_i64().unwrap() as i32;
    nw.w.ok(&["pod", "rm", "-f", "shared", "apart"]);
    wait_pid_gone(pause);
    assert_eq!(nw.w.ok(&["pod", "ls"]).lines().count(), 1);
    assert!(nw.w.ok(&["ps", "-a"]).lines().count() <= 1, "the pod's container was left");
}

/// A pod on the routed driver (/32, 169.254.1.1 onlink): the node reaches
/// the pod's server, the pod reaches the internet.
#[test]
fn pod_on_the_routed_driver() {
    let mut nw = net_world("pr", "nftables");
    nw.w.ok(&["network", "create", "--driver", "routed", "--subnet", "10.31.0.0/24", "calico"]);
    nw.w.ok(&["pod", "create", "--name", "rp", "--network", "calico"]);
    let ip = pod_ip(&nw.w, "rp");
    nw.w.ok(&[
        "run", "-d", "--pod", "rp", "--name", "srv", "busybox", "nc", "-ll", "-p", "7000", "-e", "echo", "from-rp",
    ]);
    let node = nw.node().to_string();
    wait_until("the routed pod's server", || tcp_from(&nw, &node, &ip, 7000) == "from-rp");
    nw.inet_listener(8081);
    let out = nw.w.ok(&[
        "run",
        "--rm",
        "--pod",
        "rp",
        "busybox",
        "sh",
        "-c",
        &format!("ip route; nc -w 2 {UPLINK_INET} 8081"),
    ]);
    assert!(out.contains("default via 169.254.1.1"), "{out}");
    assert!(out.contains(&format!("peer={UPLINK_NODE}")), "{out}");
    nw.w.ok(&["pod", "rm", "-f", "rp"]);
    assert_eq!(lease_count(&nw.w, "calico"), 0);
}

/// `kill -9` of the pause process: the pod shows as dead, refuses new
/// containers, and `pod rm` still removes everything.
#[test]
fn dead_pause_process_then_pod_rm_leaves_nothing() {
    let nw = net_world("pd", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.32.0.0/24", "doomed"]);
    let before = footprint(&nw, "doomed", &nw.w.netns_dir);
    nw.w.ok(&["pod", "create", "--name", "dp", "--network", "doomed", "-p", "8082:7000"]);
    let pause = inspect(&nw.w, "dp")["pause"]["pid"].as_i64().unwrap() as i32;
    sh(&format!("kill -9 {pause}"));
    wait_pid_gone(pause);
    assert_eq!(inspect(&nw.w, "dp")["status"], "dead");
    let err = nw.w.fails(&["run", "--rm", "--pod", "dp", "busybox", "true"]);
    assert!(err.contains("dead"), "{err}");
    nw.w.ok(&["pod", "rm", "dp"]);
    assert_eq!(footprint(&nw, "doomed", &nw.w.netns_dir), before);
}

/// `kill -9` of rcon at each point of `pod create`, then `rcon gc`: the
/// same nothing, and no pause process left in the pod's namespace.
#[test]
fn gc_after_killed_pod_create_leaves_nothing() {
    let nw = net_world("pg", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.33.0.0/24", "crashpod"]);
    let before = footprint(&nw, "crashpod", &nw.w.netns_dir);
    let points = [
        "pod:created",
        "pod:recorded",
        "pod:netns",
        "pod:paused",
        "attach:leased",
        "attach:recorded",
        "attach:wired",
        "pod:attached",
    ];
    for point in points {
        let out =
            nw.w.cmd(&["pod", "create", "--name", "half", "--network", "crashpod", "-p", "8083:7000"])
                .env("RCON_FAULT", point)
                .output()
                .unwrap();
        assert_eq!(out.status.code(), None, "{point}: rcon should have been killed");
        // The processes in the half-made pod's namespace, if it got one.
        // Held open across gc, so that its inode cannot pass to a namespace
        // another test makes meanwhile.
        let held = std::fs::File::open(nw.w.netns_dir.join("half")).ok();
        let inode = held.as_ref().map(|f| std::os::unix::fs::MetadataExt::ino(&f.metadata().unwrap()));
        let report = nw.w.ok(&["gc"]);
        assert!(report.contains("removed pod half"), "{point}: {report}");
        assert_eq!(footprint(&nw, "crashpod", &nw.w.netns_dir), before, "{point}: gc left something");
        if let Some(ino) = inode {
            let left: Vec<i32> = procs_in_netns(ino);
            assert!(left.is_empty(), "{point}: processes left in the pod's netns: {left:?}");
        }
    }
    // The name is free again.
    nw.w.ok(&["pod", "create", "--name", "half", "--network", "crashpod"]);
    assert_eq!(nw.w.ok(&["gc"]).trim(), "", "gc touched a live pod");
    nw.w.ok(&["pod", "rm", "half"]);
}

/// Live processes whose network namespace has inode `ino`.
fn procs_in_netns(ino: u64) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            std::fs::metadata(format!("/proc/{p}/ns/net")).is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == ino)
                && pid_alive(p)
        })
        .collect()
}

/// Bad input: one clear line each, and nothing changes.
#[test]
fn bad_pod_input_changes_nothing() {
    let nw = net_world("px", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.34.0.0/24", "padded"]);
    nw.w.ok(&["pod", "create", "--name", "taken", "--network", "padded"]);
    nw.w.ok(&["netns", "add", "squatter"]);
    let before = footprint(&nw, "padded", &nw.w.netns_dir);
    let long = "p".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["pod", "create", "--name", "taken"], "already exists"),
        (vec!["pod", "create", "--name", "squatter"], "netns of that name"),
        (vec!["pod", "create", "--name", "a/b"], "single path component"),
        (vec!["pod", "create", "--name", "../x"], "single path component"),
        (vec!["pod", "create", "--name=-x"], "invalid pod name"),
        (vec!["pod", "create", "--name", &long], "the limit is 63"),
        (vec!["pod", "create", "--network", "nosuchnet"], "does not exist"),
        (vec!["pod", "create", "--network", "none", "-p", "80"], "need a network"),
        (vec!["pod", "create", "--network", "padded", "-p", "notaport"], "notaport"),
        (vec!["pod", "create", "--share", "net"], "net"),
        (vec!["run", "--rm", "--pod", "nosuchpod", "busybox", "true"], "does not exist"),
        (vec!["run", "--rm", "--pod", "a/b", "busybox", "true"], "pod"),
        (
            vec!["run", "--rm", "--pod", "taken", "--network", "padded", "busybox", "true"],
            "--network belongs to the pod",
        ),
        (vec!["run", "--rm", "--pod", "taken", "-p", "80", "busybox", "true"], "-p belongs to the pod"),
        (vec!["pod", "rm", "nosuchpod"], "does not exist"),
    ];
    for (args, want) in cases {
        let err = nw.w.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(footprint(&nw, "padded", &nw.w.netns_dir), before);
    nw.w.ok(&["pod", "rm", "taken"]);
    nw.w.ok(&["netns", "delete", "squatter"]);
}

/// 100 pods created and removed in a loop: links, netns files, mounts,
/// leases, records and pause processes all back to where they were.
#[test]
fn hundred_pods_leak_nothing() {
    let nw = net_world("ph", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.35.0.0/24", "churn"]);
    let before = footprint(&nw, "churn", &nw.w.netns_dir);
    let mut pauses = Vec::new();
    for i in 0..100 {
        let name = format!("p{i}");
        nw.w.ok(&["pod", "create", "--name", &name, "--network", "churn"]);
        let rec: Value =
            serde_json::from_slice(&std::fs::read(nw.w.data_root.join(format!("pods/{name}.json"))).unwrap()).unwrap();
        pauses.push(rec["pause"]["pid"].as_i64().unwrap() as i32);
        nw.w.ok(&["pod", "rm", &name]);
    }
    assert_eq!(footprint(&nw, "churn", &nw.w.netns_dir), before, "100 pods leaked");
    let alive: Vec<&i32> = pauses.iter().filter(|&&p| pid_alive(p)).collect();
    assert!(alive.is_empty(), "pause processes left: {alive:?}");
}

/// The README's own example: `pod create --name api -p 8081:80` with no
/// network flag joins the default bridge, as `rcon run` does, and busybox
/// httpd in a member answers on the published port from the internet
/// namespace, from the node and from the node's localhost. `--network none`
/// gives only lo, and refuses -p.
#[test]
fn pod_without_network_flag_gets_the_default_bridge_and_publishes() {
    let nw = net_world("pd", "nftables");
    let pod = format!("{}api", nw.w.name);
    nw.w.ok(&["pod", "create", "--name", &pod, "-p", "8081:80"]);
    assert_eq!(inspect(&nw.w, &pod)["network"], "bridge");
    let ip = pod_ip(&nw.w, &pod);
    let page = "echo api-page > /www/index.html && exec httpd -f -p 80 -h /www";
    nw.w.ok(&["run", "-d", "--pod", &pod, "--name", "web", "busybox", "sh", "-c", &format!("mkdir /www; {page}")]);
    let get = |ns: &str, host: &str| {
        nw.w.sh_in(ns, &format!("timeout 3 busybox wget -q -O - http://{host}:8081/ || true")).trim().to_string()
    };
    let node = nw.node().to_string();
    wait_until("httpd to answer", || get(&node, "127.0.0.1") == "api-page");
    assert!(ip.starts_with("172.17."), "not on the default bridge: {ip}");
    assert_eq!(get(&nw.inet.clone(), UPLINK_NODE), "api-page", "from another namespace");
    assert_eq!(get(&node, UPLINK_NODE), "api-page", "from the node");
    assert_eq!(get(&node, "127.0.0.1"), "api-page", "from the node's localhost");
    nw.w.ok(&["pod", "rm", "-f", &pod]);

    let bare = format!("{}lo", nw.w.name);
    let err = nw.w.fails(&["pod", "create", "--name", &bare, "--network", "none", "-p", "8082:80"]);
    assert!(err.contains("--network none"), "{err}");
    nw.w.ok(&["pod", "create", "--name", &bare, "--network", "none"]);
    let links = nw.w.ok(&["run", "--rm", "--pod", &bare, "busybox", "ip", "-o", "link"]);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, vec!["lo"], "{links}");
    nw.w.ok(&["pod", "rm", &bare]);
}

/// The fds of a process, by number.
fn open_fds(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    fds
}

/// Run rcon `args` in `w` with `held` open at fd 9, as a caller's inherited fd; it must succeed.
fn run_holding(w: &World, args: &[&str], held: &std::fs::File) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = held.as_raw_fd();
    let mut cmd = w.cmd(args);
    // SAFETY: dup2 in the forked child, on an fd the parent keeps open: async-signal-safe.
    unsafe {
        cmd.pre_exec(move || match libc::dup2(fd, 9) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// None of `procs` (what, pid) has the file `path` open.
fn none_holds(procs: &[(&str, i32)], path: &Path) {
    for &(what, pid) in procs {
        let holds = open_fds(pid)
            .into_iter()
            .filter(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|l| l == path))
            .collect::<Vec<_>>();
        assert_eq!(holds, Vec::<i32>::new(), "{what} (pid {pid}) holds the caller's file at these fds");
    }
}

/// A caller's inherited fd (a shell's `flock` lock, say) does not live on in
/// the processes rcon leaves running: the pause, the resolver and its worker
/// have stdio only, and neither `run -d`'s monitor nor its container keeps
/// it, so the caller's lock is free once rcon returns.
#[test]
fn resident_children_keep_no_fd_of_their_caller() {
    let nw = net_world("pf", "nftables");
    nw.w.ok(&["network", "create", "--subnet", "10.43.0.0/24", "named"]);
    let held_path = nw.w.root.join("held");
    let held = std::fs::File::create(&held_path).unwrap();
    run_holding(&nw.w, &["pod", "create", "--name", "fdp", "--network", "named"], &held);
    let pause = inspect(&nw.w, "fdp")["pause"]["pid"].as_i64().unwrap() as i32;
    let resolver = resolver_pid(&nw.w.root).expect("the network's resolver");
    let worker: i32 = sh(&format!("pgrep -P {resolver}")).trim().parse().expect("the resolver's worker");
    none_holds(&[("the pause", pause), ("the resolver", resolver), ("its worker", worker)], &held_path);
    // The pause has stdio only.
    assert_eq!(open_fds(pause), vec![0, 1, 2]);
    nw.w.ok(&["pod", "rm", "fdp"]);

    // `run -d`'s monitor stays without an exec: neither it nor the container keeps the file.
    run_holding(&nw.w, &["run", "-d", "--name", "fdc", "--network", "named", "busybox", "sleep", "1000"], &held);
    let v: serde_json::Value = serde_json::from_str(&nw.w.ok(&["inspect", "fdc"])).unwrap();
    let sleeper = v["pid"].as_i64().unwrap() as i32;
    let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap();
    let monitor: i32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    none_holds(&[("run -d's monitor", monitor), ("the container", sleeper)], &held_path);
    nw.w.ok(&["rm", "-f", "fdc"]);
}
