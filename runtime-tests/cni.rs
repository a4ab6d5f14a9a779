//! rcon as a CNI plugin, driven as libcni drives a plugin: CNI_* in the
//! environment, the configuration on stdin, the result or error result on
//! stdout. Alone (every command and error path), after a kill -9 mid-ADD,
//! with host-local as its IPAM, and first in chains with Debian's reference
//! plugins (portmap, bandwidth, firewall, tuning). Everything runs in the
//! test's node namespace, with container namespaces of its own.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::common::{wait_until, World};
use crate::network::{net_world, UPLINK_NODE};

/// Debian's containernetworking-plugins.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// What one plugin run gave: success, stdout as JSON (null when empty), stderr.
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) signal: Option<i32>,
    pub(crate) out: Value,
    pub(crate) err: String,
}

/// The runtime side: a CNI_PATH holding `rcon` (this build's rcon-cni) and
/// the reference plugins, and plugins run inside the world's node namespace.
pub(crate) struct Cni<'a> {
    pub(crate) w: &'a World,
    pub(crate) dirs: Vec<PathBuf>,
    /// Extra environment (RCON_FAULT).
    pub(crate) env: Vec<(String, String)>,
    /// A program and its flags that run the plugin (strace in runtime-tests/hotpath.rs).
    pub(crate) wrap: Vec<String>,
}

impl<'a> Cni<'a> {
    pub(crate) fn new(w: &'a World) -> Cni<'a> {
        let bin = w.dir.path().join("cni-bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rcon-cni"), bin.join("rcon")).unwrap();
        Cni { w, dirs: vec![bin, PathBuf::from(REFERENCE_PLUGINS)], env: Vec::new(), wrap: Vec::new() }
    }

    fn path(&self) -> String {
        self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
    }

    /// Run plugin `conf.type` for `cmd` with `vars` (CNI_* names without the prefix) and `stdin`.
    pub(crate) fn raw(&self, cmd: Option<&str>, vars: &[(&str, &str)], plugin: &str, stdin: &[u8]) -> Run {
        let prog = self.dirs.iter().map(|d| d.join(plugin)).find(|p| p.exists()).expect("plugin in CNI_PATH");
        let mut c = match self.wrap.split_first() {
            Some((wrapper, flags)) => {
                let mut c = Command::new(wrapper);
                c.args(flags).arg(prog);
                c
            }
            None => Command::new(prog),
        };
        c.env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_PATH", self.path())
            .env("RCON_ROOT", &self.w.root)
            .env("RCON_DATA_ROOT", &self.w.data_root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cmd) = cmd {
            c.env("CNI_COMMAND", cmd);
        }
        for (k, v) in vars {
            c.env(format!("CNI_{k}"), v);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let ns = std::fs::File::open(format!("/var/run/netns/{}", self.w.node.as_ref().unwrap())).unwrap();
        // SAFETY: the hook runs in the forked child before exec and only calls setns(2) on an fd it owns.
        unsafe {
            c.pre_exec(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let o = child.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        Run {
            ok: o.status.success(),
            signal: o.status.signal(),
            out: if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).expect(&text) },
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// One plugin, one command, for container `cid` in namespace `ns` (a world netns name).
    pub(crate) fn run(&self, cmd: &str, cid: &str, ns: &str, conf: &Value) -> Run {
        let netns = if ns.starts_with('/') { ns.to_string() } else { format!("/var/run/netns/{ns}") };
        let vars = [("CONTAINERID", cid), ("NETNS", netns.as_str()), ("IFNAME", "eth0")];
        let plugin = conf["type"].as_str().unwrap();
        self.raw(Some(cmd), &vars, plugin, &serde_json::to_vec(conf).unwrap())
    }

    pub(crate) fn ok(&self, cmd: &str, cid: &str, ns: &str, conf: &Value) -> Value {
        let r = self.run(cmd, cid, ns, conf);
        assert!(r.ok, "{cmd} {cid} failed: {} {}", r.out, r.err);
        r.out
    }

    /// A failing rcon run: the spec's error result on stdout, one line on stderr; returns the code.
    pub(crate) fn fails(&self, cmd: &str, cid: &str, ns: &str, conf: &Value) -> u64 {
        let r = self.run(cmd, cid, ns, conf);
        error_code(&r)
    }

    /// libcni's ADD of a list: each plugin gets the list's name and version,
    /// the result so far as prevResult, and the runtime config of its capabilities.
    pub(crate) fn add_list(&self, list: &Value, cid: &str, ns: &str, rt: &Value) -> Value {
        let mut prev = Value::Null;
        for p in list["plugins"].as_array().unwrap() {
            prev = self.ok("ADD", cid, ns, &plugin_conf(list, p, &prev, rt));
        }
        prev
    }

    /// libcni's DEL of a list: in reverse, each with the list's last result.
    pub(crate) fn del_list(&self, list: &Value, cid: &str, ns: &str, rt: &Value, result: &Value) {
        for p in list["plugins"].as_array().unwrap().iter().rev() {
            self.ok("DEL", cid, ns, &plugin_conf(list, p, result, rt));
        }
    }
}

pub(crate) fn error_code(r: &Run) -> u64 {
    assert!(!r.ok, "succeeded but should fail: {}", r.out);
    for key in ["cniVersion", "code", "msg", "details"] {
        assert!(r.out.get(key).is_some(), "error result without {key}: {}", r.out);
    }
    assert_eq!(r.err.trim_end().lines().count(), 1, "stderr is not one line: {:?}", r.err);
    r.out["code"].as_u64().unwrap()
}

fn plugin_conf(list: &Value, p: &Value, prev: &Value, rt: &Value) -> Value {
    let mut c = p.clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    if !prev.is_null() {
        c["prevResult"] = prev.clone();
    }
    if let Some(caps) = p["capabilities"].as_object() {
        for (cap, on) in caps {
            if on.as_bool() == Some(true) && !rt[cap].is_null() {
                c["runtimeConfig"][cap] = rt[cap].clone();
            }
        }
    }
    c
}

/// The container's address in an ADD result (without the prefix).
pub(crate) fn address(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// The node end of the container's veth in an ADD result.
fn host_end(result: &Value) -> String {
    let ifs = result["interfaces"].as_array().unwrap();
    ifs.iter().map(|i| i["name"].as_str().unwrap()).find(|n| n.starts_with("rv")).unwrap().to_string()
}

/// rcon's node-side veth ends in the node.
fn rcon_links(w: &World) -> Vec<String> {
    let out = w.sh_in(w.node.as_ref().unwrap(), "ip -o link show");
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .filter(|n| n.starts_with("rv"))
        .collect()
}

/// The endpoints and leases rcon has on `net`.
fn held(w: &World, net: &str) -> (usize, usize) {
    let v: Value = serde_json::from_str(&w.ok(&["network", "inspect", net])).unwrap();
    (v["endpoints"].as_array().unwrap().len(), v["leases"].as_array().unwrap().len())
}

/// A container namespace of the world: its name.
fn container_ns(w: &mut World, tag: &str) -> String {
    let ns = format!("{}{tag}", w.name);
    w.add_system_netns(&ns);
    ns
}

/// A TCP server in namespace `ns` on `port` answering `reply`; killed on drop.
pub(crate) struct Server(Child);

impl Server {
    pub(crate) fn start(w: &World, ns: &str, port: u16, reply: &str) -> Server {
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .args(["socat", &format!("TCP-LISTEN:{port},reuseaddr,fork"), &format!("SYSTEM:echo {reply}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the server", || w.sh_in(ns, "ss -ltn").contains(&format!(":{port}")));
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `socat` reads from `ip:port` inside namespace `ns` (empty when nothing answers).
pub(crate) fn fetch(ns: &str, ip: &str, port: u16) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .args(["socat", "-T3", "-", &format!("TCP:{ip}:{port},connect-timeout=3")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn bridge_conf(version: &str, subnet: &str) -> Value {
    json!({"cniVersion": version, "name": "cnibr", "type": "rcon", "subnet": subnet})
}

#[test]
fn version_lists_the_spec_versions() {
    let w = World::with_node("cv");
    let r = Cni::new(&w).raw(Some("VERSION"), &[], "rcon", b"");
    assert!(r.ok, "{}", r.err);
    assert_eq!(r.out, json!({"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}));
}

#[test]
fn bridge_add_check_del() {
    let mut w = World::with_node("cb");
    let (c1, c2) = (container_ns(&mut w, "a"), container_ns(&mut w, "b"));
    let cni = Cni::new(&w);
    let conf = bridge_conf("1.1.0", "10.88.1.0/24");
    let r1 = cni.ok("ADD", "ctr1", &c1, &conf);
    assert_eq!(r1["cniVersion"], "1.1.0");
    let idx = r1["ips"][0]["interface"].as_u64().unwrap() as usize;
    let inner = &r1["interfaces"][idx];
    assert_eq!(
        (inner["name"].as_str(), inner["sandbox"].as_str()),
        (Some("eth0"), Some(&*format!("/var/run/netns/{c1}")))
    );
    assert_eq!(r1["ips"][0]["gateway"], "10.88.1.1");
    assert_eq!(r1["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.88.1.1"}]));
    let ip1 = address(&r1);
    assert!(w.sh_in(&c1, "ip -4 -o addr show eth0").contains(&format!("{ip1}/24")));
    // A 0.4.0 configuration gets the 0.4.0 result layout.
    let r2 = cni.ok("ADD", "ctr2", &c2, &bridge_conf("0.4.0", "10.88.1.0/24"));
    assert_eq!((r2["cniVersion"].as_str(), r2["ips"][0]["version"].as_str()), (Some("0.4.0"), Some("4")));
    // Real packets between the two.
    w.sh_in(&c1, &format!("busybox ping -c1 -W3 {}", address(&r2)));

    let mut check = conf.clone();
    check["prevResult"] = r1.clone();
    assert_eq!(cni.ok("CHECK", "ctr1", &c1, &check), Value::Null);
    // A second ADD of the same container and interface: an error, and nothing changes.
    let links = rcon_links(&w);
    assert_eq!(cni.fails("ADD", "ctr1", &c1, &conf), 100);
    assert_eq!(rcon_links(&w), links);
    assert_eq!(held(&w, "cnibr"), (2, 2));

    // DEL, twice; CHECK then fails.
    assert_eq!(cni.ok("DEL", "ctr1", &c1, &conf), Value::Null);
    assert!(!w.sh_in(&c1, "ip -o link show").contains("eth0"));
    assert_eq!(rcon_links(&w).len(), 1);
    cni.ok("DEL", "ctr1", &c1, &conf);
    assert_eq!(cni.fails("CHECK", "ctr1", &c1, &check), 101);
    cni.ok("DEL", "ctr2", &c2, &conf);
    assert_eq!((held(&w, "cnibr"), rcon_links(&w).len()), ((0, 0), 0));
    // STATUS: ready.
    let st = cni.raw(Some("STATUS"), &[], "rcon", &serde_json::to_vec(&conf).unwrap());
    assert!(st.ok, "{}", st.out);
}

#[test]
fn del_after_the_netns_is_gone() {
    let mut w = World::with_node("cg");
    let c1 = container_ns(&mut w, "a");
    let cni = Cni::new(&w);
    let conf = bridge_conf("1.0.0", "10.88.2.0/24");
    cni.ok("ADD", "ctr1", &c1, &conf);
    crate::common::sh(&format!("ip netns delete {c1}"));
    cni.ok("DEL", "ctr1", &c1, &conf);
    cni.ok("DEL", "ctr1", "", &conf);
    assert_eq!((held(&w, "cnibr"), rcon_links(&w).len()), ((0, 0), 0));
}

#[test]
fn errors_are_the_spec_error_result() {
    let mut w = World::with_node("ce");
    let c1 = container_ns(&mut w, "a");
    let cni = Cni::new(&w);
    let good = bridge_conf("1.1.0", "10.88.3.0/24");
    // A network that exists, for the mismatch case.
    cni.ok("ADD", "ctr0", &c1, &good);
    cni.ok("DEL", "ctr0", &c1, &good);
    let netns = format!("/var/run/netns/{c1}");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let before = (rcon_links(&w), held(&w, "cnibr"), std::fs::read_dir(w.data_root.join("networks")).unwrap().count());
    let std_vars = [("CONTAINERID", "ctr1"), ("NETNS", netns.as_str()), ("IFNAME", "eth0")];
    let cases: Vec<(&str, Run, u64)> = vec![
        ("unknown command", cni.raw(Some("FROB"), &std_vars, "rcon", b"{}"), 4),
        (
            "no CNI_NETNS",
            cni.raw(
                Some("ADD"),
                &[("CONTAINERID", "ctr1"), ("IFNAME", "eth0")],
                "rcon",
                &serde_json::to_vec(&good).unwrap(),
            ),
            4,
        ),
        ("bad JSON", cni.raw(Some("ADD"), &std_vars, "rcon", b"{\"cniVersion\":"), 6),
        ("old version", cni.run("ADD", "ctr1", &c1, &with("cniVersion", json!("0.3.1"))), 1),
        ("future version", cni.run("ADD", "ctr1", &c1, &with("cniVersion", json!("2.0.0"))), 1),
        (
            "GC before 1.1",
            cni.raw(Some("GC"), &[], "rcon", &serde_json::to_vec(&with("cniVersion", json!("1.0.0"))).unwrap()),
            1,
        ),
        ("unknown driver", cni.run("ADD", "ctr1", &c1, &with("driver", json!("macvlan"))), 7),
        ("other subnet", cni.run("ADD", "ctr1", &c1, &with("subnet", json!("10.88.4.0/24"))), 7),
        ("no such ipam plugin", cni.run("ADD", "ctr1", &c1, &with("ipam", json!({"type": "nope"}))), 7),
        (
            "bad port",
            cni.run(
                "ADD",
                "ctr1",
                &c1,
                &with("runtimeConfig", json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]})),
            ),
            7,
        ),
        ("not a netns", cni.run("ADD", "ctr1", "/etc/hostname", &good), 8),
        ("cluster network absent", cni.run("ADD", "ctr1", &c1, &with("driver", json!("cluster"))), 7),
    ];
    for (what, r, code) in cases {
        assert_eq!(error_code(&r), code, "{what}: {}", r.out);
    }
    let after = (rcon_links(&w), held(&w, "cnibr"), std::fs::read_dir(w.data_root.join("networks")).unwrap().count());
    assert_eq!(before, after, "a failed call changed the node");
}

#[test]
fn routed_network_publishes_port_mappings() {
    let mut nw = net_world("cr", "nftables");
    let c1 = container_ns(&mut nw.w, "a");
    let cni = Cni::new(&nw.w);
    let conf = json!({"cniVersion": "1.0.0", "name": "cniroute", "type": "rcon", "driver": "routed",
        "subnet": "10.88.5.0/24", "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}});
    let r = cni.ok("ADD", "ctr1", &c1, &conf);
    assert_eq!(r["routes"][0], json!({"dst": "169.254.1.1/32"}));
    assert!(nw.w.sh_in(nw.node(), "cat /proc/sys/net/ipv4/conf/all/forwarding").trim() == "1");
    let _srv = Server::start(&nw.w, &c1, 80, "from-c1");
    assert_eq!(fetch(&nw.inet, UPLINK_NODE, 8080), "from-c1");
    cni.ok("DEL", "ctr1", &c1, &conf);
    assert_eq!(fetch(&nw.inet, UPLINK_NODE, 8080), "");
    assert!(!nw.w.sh_in(nw.node(), "nft list table ip rcon").contains("8080"));
}

#[test]
fn gc_after_kill_mid_add() {
    let mut w = World::with_node("ck");
    let (c1, c2, c3) = (container_ns(&mut w, "a"), container_ns(&mut w, "b"), container_ns(&mut w, "c"));
    let conf = bridge_conf("1.1.0", "10.88.6.0/24");
    let mut cni = Cni::new(&w);
    cni.ok("ADD", "ctr3", &c3, &conf);
    for (cid, ns, point) in [("ctr1", &c1, "attach:wired"), ("ctr2", &c2, "attach:leased")] {
        cni.env = vec![("RCON_FAULT".into(), point.into())];
        let r = cni.run("ADD", cid, ns, &conf);
        assert_eq!(r.signal, Some(9), "{point}: not killed: {}", r.out);
    }
    cni.env.clear();
    // ctr1 left a record, a lease and a veth; ctr2 a lease only.
    assert_eq!(held(&w, "cnibr"), (2, 3));
    assert_eq!(rcon_links(&w).len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr3", "ifname": "eth0"}]);
    let r = cni.raw(Some("GC"), &[], "rcon", &serde_json::to_vec(&gc).unwrap());
    assert!(r.ok, "GC: {} {}", r.out, r.err);
    assert_eq!(held(&w, "cnibr"), (1, 1));
    assert_eq!(rcon_links(&w).len(), 1);
    assert!(!w.sh_in(&c1, "ip -o link show").contains("eth0"));
    // The valid one still works.
    w.sh_in(&c3, "busybox ping -c1 -W3 10.88.6.1");
    cni.ok("DEL", "ctr3", &c3, &conf);
    assert_eq!((held(&w, "cnibr"), rcon_links(&w).len()), ((0, 0), 0));
}

#[test]
fn host_local_ipam() {
    let mut w = World::with_node("ch");
    let c1 = container_ns(&mut w, "a");
    let cni = Cni::new(&w);
    let data = w.dir.path().join("host-local");
    let conf = json!({"cniVersion": "1.0.0", "name": "cnihl", "type": "rcon",
        "ipam": {"type": "host-local", "dataDir": data, "ranges": [[{"subnet": "10.88.7.0/24", "rangeStart": "10.88.7.50"}]]}});
    let r = cni.ok("ADD", "ctr1", &c1, &conf);
    assert_eq!(address(&r), "10.88.7.50");
    assert!(data.join("cnihl/10.88.7.50").exists());
    assert!(w.sh_in(&c1, "ip -4 -o addr show eth0").contains("10.88.7.50/24"));
    w.sh_in(&c1, "busybox ping -c1 -W3 10.88.7.1");
    cni.ok("DEL", "ctr1", &c1, &conf);
    assert!(!data.join("cnihl/10.88.7.50").exists());
    cni.ok("DEL", "ctr1", &c1, &conf);
    assert_eq!(held(&w, "cnihl"), (0, 0));
}

#[test]
fn chain_with_portmap() {
    let mut nw = net_world("cp", "nftables");
    let c1 = container_ns(&mut nw.w, "a");
    let cni = Cni::new(&nw.w);
    let list = json!({"cniVersion": "1.0.0", "name": "cnipm", "plugins": [
        {"type": "rcon", "subnet": "10.88.8.0/24"},
        {"type": "portmap", "capabilities": {"portMappings": true}}]});
    let rt = json!({"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]});
    let r = cni.add_list(&list, "ctr1", &c1, &rt);
    let _srv = Server::start(&nw.w, &c1, 80, "via-portmap");
    assert_eq!(fetch(&nw.inet, UPLINK_NODE, 8081), "via-portmap");
    cni.del_list(&list, "ctr1", &c1, &rt, &r);
    assert_eq!(held(&nw.w, "cnipm"), (0, 0));
}

#[test]
fn chain_with_bandwidth_firewall_tuning() {
    let mut w = World::with_node("cw");
    let c1 = container_ns(&mut w, "a");
    let cni = Cni::new(&w);
    let list = json!({"cniVersion": "1.0.0", "name": "cnibw", "plugins": [
        {"type": "rcon", "subnet": "10.88.9.0/24"},
        {"type": "bandwidth", "ingressRate": 8000000, "ingressBurst": 100000},
        {"type": "firewall", "backend": "iptables"},
        {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}]});
    let r = cni.add_list(&list, "ctr1", &c1, &Value::Null);
    let ip = address(&r);
    let host = host_end(&r);
    let node = w.node.clone().unwrap();
    // bandwidth shapes what goes into the container on the node end of its veth.
    assert!(w.sh_in(&node, &format!("tc qdisc show dev {host}")).contains("tbf"), "no tbf on {host}");
    assert!(w.sh_in(&node, "iptables -S CNI-FORWARD").contains(&ip));
    assert_eq!(w.sh_in(&c1, "cat /proc/sys/net/core/somaxconn").trim(), "512");
    w.sh_in(&c1, "busybox ping -c1 -W3 10.88.9.1");
    cni.del_list(&list, "ctr1", &c1, &Value::Null, &r);
    assert!(!w.sh_in(&node, "iptables -S CNI-FORWARD || true").contains(&ip));
    assert_eq!((held(&w, "cnibw"), rcon_links(&w).len()), ((0, 0), 0));
}

/// podman 4.3 with its CNI backend, a conflist whose first plugin is rcon
/// (then tuning), and rcon as its OCI runtime, all inside the world's node
/// namespace: a container gets its address from rcon, another reaches it,
/// and its published port (rcon's nftables maps) answers from the internet namespace.
#[test]
fn podman_runs_on_an_rcon_cni_network() {
    let nw = net_world("cpod", "nftables");
    let node = nw.node().to_string();
    let d = nw.w.dir.path();
    let cni = Cni::new(&nw.w);
    let confdir = d.join("cni-conf");
    std::fs::create_dir_all(&confdir).unwrap();
    let list = json!({"cniVersion": "1.0.0", "name": "rconnet", "plugins": [
        {"type": "rcon", "subnet": "10.89.3.0/24", "capabilities": {"portMappings": true},
         "dataRoot": nw.w.data_root, "runRoot": nw.w.root},
        {"type": "tuning"}]});
    std::fs::write(confdir.join("rconnet.conflist"), serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    let conf = d.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"{REFERENCE_PLUGINS}\"]\nnetwork_config_dir = \"{}\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            cni.dirs[0].display(),
            confdir.display()
        ),
    )
    .unwrap();
    let podman = |args: &str| -> std::process::Output {
        let cmd = format!(
            "nsenter --net=/var/run/netns/{node} podman --root {root} --runroot {run} --tmpdir {tmp} --runtime {rcon} --cgroup-manager cgroupfs {args}",
            root = d.join("podroot").display(),
            run = d.join("podrun").display(),
            tmp = d.join("podtmp").display(),
            rcon = crate::common::rcon_bin(),
        );
        Command::new("sh").arg("-c").arg(&cmd).env("CONTAINERS_CONF", &conf).output().unwrap()
    };
    let ulimits = "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024";
    // podman writes mount points into a rootfs: one copy per container.
    for r in ["srv", "cli"] {
        crate::common::sh(&format!("cp -a {} {}", crate::common::busybox_rootfs().display(), d.join(r).display()));
    }
    let srv = podman(&format!(
        "run -d --name srv --network rconnet -p 8090:80 {ulimits} --rootfs {} sh -c 'nc -ll -p 80 -e echo from-podman'",
        d.join("srv").display()
    ));
    let result = std::panic::catch_unwind(|| {
        assert!(srv.status.success(), "podman run -d: {}", String::from_utf8_lossy(&srv.stderr));
        let v: Value = serde_json::from_str(&nw.w.ok(&["network", "inspect", "rconnet"])).unwrap();
        let ep = &v["endpoints"][0];
        assert!(ep["owner"].as_str().unwrap().starts_with("cni:"), "{ep}");
        let ip = ep["ip"].as_str().unwrap().to_string();
        // The published port answers from outside the node (a liveness wait for nc to listen).
        wait_until("the published port", || fetch(&nw.inet, UPLINK_NODE, 8090) == "from-podman");
        let cli = podman(&format!(
            "run --rm --network rconnet {ulimits} --rootfs {} sh -c 'ip -4 -o addr show eth0; nc -w 3 {ip} 80'",
            d.join("cli").display()
        ));
        let out = String::from_utf8_lossy(&cli.stdout);
        assert!(cli.status.success(), "podman run: {out}{}", String::from_utf8_lossy(&cli.stderr));
        assert!(out.contains("inet 10.89.3."), "no address from rcon: {out}");
        assert!(out.contains("from-podman"), "the client did not reach the server: {out}");
        let rm = podman("rm -f -t 0 srv");
        assert!(rm.status.success(), "podman rm: {}", String::from_utf8_lossy(&rm.stderr));
        assert_eq!(held(&nw.w, "rconnet"), (0, 0));
    });
    let reset = podman("system reset --force");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(reset.status.success(), "podman system reset: {}", String::from_utf8_lossy(&reset.stderr));
}
