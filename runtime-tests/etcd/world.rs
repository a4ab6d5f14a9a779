//! The etcd cluster world: rcon nodes on an underlay bridge (cluster.rs's
//! world), an etcd namespace on the same bridge with a real etcd in it, and
//! `rcon cluster agent` processes whose stdout the test reads line by line.

use std::io::BufRead;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};

use super::flannel::Flannel;
use super::store::{Etcd, ETCD_IP, PREFIX};
use crate::cluster::{cluster, plug, Cluster};
use crate::common::{wait_until, World};

/// A running `rcon cluster agent`: its stdout and stderr lines as they come.
pub(crate) struct Agent {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collect the lines of `r` into a shared list, on a thread of its own.
fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

impl Agent {
    /// Spawn `rcon cluster agent ARGS` on `w`'s node and wait until it says
    /// it is watching (in sync).
    pub(crate) fn start(w: &World, args: &[&str]) -> Agent {
        let mut child = w
            .cmd(&[&["cluster", "agent"], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning rcon cluster agent");
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        let mut a = Agent { child, out, err };
        a.wait_line(0, "the agent to watch", |l| l.starts_with("watching ") && l.contains(" from revision "));
        a
    }

    /// Its stdout lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// Stdout and stderr so far, for failure messages.
    pub(crate) fn log(&self) -> String {
        format!("stdout: {:?}\nstderr: {:?}", self.lines(), self.err.lock().unwrap())
    }

    /// Wait for a stdout line at index `from` or later that `pred` accepts;
    /// returns its index. Panics if the agent exits first.
    pub(crate) fn wait_line(&mut self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        let mut found = None;
        wait_until(what, || {
            found = self.lines().iter().skip(from).position(|l| pred(l)).map(|i| i + from);
            if found.is_none() {
                if let Some(st) = self.child.try_wait().unwrap() {
                    panic!("the agent exited ({st}) before {what}: {}", self.log());
                }
            }
            found.is_some()
        });
        found.unwrap()
    }

    /// The agent is still running.
    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// End it with `signal` and reap it.
    pub(crate) fn stop(mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let _ = self.child.wait();
    }
}

/// rcon nodes, an etcd, their agents and maybe a hand-made flannel node.
/// Dropped in this order: agents killed, nodes reset (while etcd still
/// runs, so their leases go), namespaces removed, etcd killed.
pub(crate) struct EtcdCluster {
    pub(crate) agents: Vec<Option<Agent>>,
    pub(crate) c: Cluster,
    pub(crate) etcd: Etcd,
}

/// The flannel config that every test starts from (VXLAN on flannel's port and VNI).
pub(crate) const CONFIG: &str =
    r#"{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}"#;

/// `n` rcon nodes and an etcd (with client-certificate TLS if `tls`) on one underlay.
pub(crate) fn etcd_cluster(tag: &str, n: usize, tls: bool) -> EtcdCluster {
    let mut c = cluster(tag, n);
    let ns = format!("{}e", c.nodes[0].name);
    c.nodes[0].add_system_netns(&ns);
    plug(&c.underlay, &ns, "pe", ETCD_IP);
    let etcd = Etcd::new(&ns, tls);
    EtcdCluster { agents: (0..n).map(|_| None).collect(), c, etcd }
}

impl EtcdCluster {
    /// etcdctl from the etcd namespace.
    pub(crate) fn ctl(&self, args: &[&str]) -> String {
        self.etcd.ctl_ok(&self.etcd.ns, args)
    }

    /// Put `<prefix>/config` with etcdctl.
    pub(crate) fn put_config(&self, json: &str) {
        self.ctl(&["put", &format!("{PREFIX}/config"), json]);
    }

    /// The lease keys in the store (their last parts), sorted.
    pub(crate) fn leases(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .etcd
            .get_prefix(&self.etcd.ns, &format!("{PREFIX}/subnets/"))
            .into_iter()
            .map(|(k, _)| k.rsplit('/').next().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    /// `rcon ARGS ETCD_FLAGS` on node `i` (ETCD_FLAGS reach this world's etcd).
    pub(crate) fn rcon(&self, i: usize, args: &[&str]) -> Output {
        let flags = self.etcd.rcon_flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.c.nodes[i].rcon(&[args, &flags].concat())
    }

    /// The arguments of `cluster init --store etcd` on the underlay `u0`, with `extra`.
    pub(crate) fn init_args<'a>(&'a self, extra: &[&'a str]) -> Vec<String> {
        let mut a: Vec<String> = ["cluster", "init", "--store", "etcd", "--underlay", "u0"].map(String::from).into();
        a.extend(self.etcd.rcon_flags());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// `cluster init --store etcd` on node `i`, which must succeed.
    pub(crate) fn init(&self, i: usize, extra: &[&str]) -> String {
        let a = self.init_args(extra);
        self.c.nodes[i].ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Start node `i`'s agent (flags: what init recorded, plus `extra`) and
    /// wait until it watches.
    pub(crate) fn start_agent(&mut self, i: usize, extra: &[&str]) {
        assert!(self.agents[i].is_none(), "node {i} already runs an agent");
        self.agents[i] = Some(Agent::start(&self.c.nodes[i], extra));
    }

    pub(crate) fn agent(&mut self, i: usize) -> &mut Agent {
        self.agents[i].as_mut().unwrap_or_else(|| panic!("node {i} runs no agent"))
    }

    /// `cluster inspect` of node `i`.
    pub(crate) fn inspect(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.c.nodes[i].ok(&["cluster", "inspect"])).unwrap()
    }

    /// Node `i`'s leased subnet, e.g. `10.244.52.0/24`.
    pub(crate) fn subnet_of(&self, i: usize) -> String {
        self.inspect(i)["node_subnet"].as_str().expect("node_subnet in cluster inspect").to_string()
    }

    /// A third octet of 10.244.X.0/24 for a test's own lease, from `want` on, that none of the
    /// first `n` nodes holds: a node's subnet is picked at random, and a test lease put on it
    /// would tell that node another node holds its subnet.
    pub(crate) fn free_octet(&self, n: usize, want: u8) -> u8 {
        let held: Vec<String> = (0..n).map(|i| self.subnet_of(i)).collect();
        (want..=255).chain(0..want).find(|o| !held.contains(&format!("10.244.{o}.0/24"))).expect("a free /24")
    }

    /// Node `i`'s kernel state that peers change: routes, permanent
    /// neighbours, FDB (sorted, so that order is no difference).
    pub(crate) fn dataplane(&self, i: usize) -> String {
        self.c
            .node_sh(i, "{ ip route; ip neigh show nud permanent; bridge fdb show; ip -o link | cut -d: -f2-; } | sort")
    }

    /// Whether node `i` has a route to `subnet`.
    pub(crate) fn has_route(&self, i: usize, subnet: &str) -> bool {
        self.c.node_sh(i, "ip route").lines().any(|l| l.starts_with(&format!("{subnet} ")))
    }

    /// Put a vxlan lease for `key_name` (e.g. `10.244.99.0-24`) as a node at
    /// `public_ip` with `mac` would, on an etcd lease of `ttl` seconds.
    pub(crate) fn put_lease(&self, key_name: &str, public_ip: &str, mac: &str, ttl: u32) {
        let id = self.etcd.grant(&self.etcd.ns, ttl);
        let value = format!(
            r#"{{"PublicIP":"{public_ip}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#
        );
        self.ctl(&["put", "--lease", &id, &format!("{PREFIX}/subnets/{key_name}"), &value]);
    }

    /// The value of lease key `key_name`, parsed.
    pub(crate) fn lease_value(&self, key_name: &str) -> serde_json::Value {
        let v = self.ctl(&["get", "--print-value-only", &format!("{PREFIX}/subnets/{key_name}")]);
        serde_json::from_str(v.trim()).unwrap_or_else(|e| panic!("lease {key_name}: {e}: {v:?}"))
    }

    /// The TTL that the etcd lease holding `key_name` was granted with.
    pub(crate) fn granted_ttl(&self, key_name: &str) -> i64 {
        let kv: serde_json::Value =
            serde_json::from_str(&self.ctl(&["get", "-w", "json", &format!("{PREFIX}/subnets/{key_name}")])).unwrap();
        let id = kv["kvs"][0]["lease"].as_i64().unwrap_or_else(|| panic!("{key_name} has no lease: {kv}"));
        let ttl: serde_json::Value =
            serde_json::from_str(&self.ctl(&["lease", "timetolive", &format!("{id:x}"), "-w", "json"])).unwrap();
        ttl["granted-ttl"].as_i64().unwrap()
    }

    /// A hand-made flannel node at 192.168.77.50 with 10.244.200.0/24, or the next /24 that no
    /// rcon node of the world holds (call it after their inits).
    pub(crate) fn flannel(&mut self) -> Flannel {
        let underlay = self.c.underlay.clone();
        let subnet = format!("10.244.{}.0/24", self.free_octet(self.c.nodes.len(), 200));
        Flannel::new(&mut self.c.nodes[0], &underlay, "192.168.77.50", &subnet)
    }
}
