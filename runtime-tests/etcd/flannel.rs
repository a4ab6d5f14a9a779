//! A flannel node made by hand, exactly as flanneld (vxlan backend) makes
//! one: the device `flannel.1` with a random VTEP MAC and the subnet's
//! network address as a /32, the bridge `cni0` with a pod behind it, the
//! lease written to etcd, and peers programmed from the other leases.

use super::store::{Etcd, PREFIX};
use crate::cluster::plug;
use crate::common::{busybox_rootfs, sh, World};

/// The hand-made node: namespace `ns` on the underlay, its pod in `pod`.
pub(crate) struct Flannel {
    pub(crate) ns: String,
    pub(crate) pod: String,
    pub(crate) ip: String,
    /// e.g. 10.244.200.0/24.
    pub(crate) subnet: String,
    /// The pod's address (the subnet's .2).
    pub(crate) pod_ip: String,
    pub(crate) mac: String,
}

/// A random locally administered unicast MAC, as flanneld gives `flannel.1`.
fn random_mac() -> String {
    let mut b = [0u8; 6];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    b[0] = (b[0] & 0xfe) | 0x02;
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// `10.244.200.0/24` → (`10.244.200`, `24`): flannel's subnets are /24s here.
fn split24(subnet: &str) -> (&str, &str) {
    let (net, len) = subnet.split_once('/').unwrap();
    (net.strip_suffix(".0").expect("a subnet on a .0"), len)
}

impl Flannel {
    /// Make the node `{owner}f` (and its pod `{owner}fp`) on `underlay` at
    /// `ip`, with `subnet` (a /24); `owner` removes both namespaces on drop.
    pub(crate) fn new(owner: &mut World, underlay: &str, ip: &str, subnet: &str) -> Flannel {
        let (ns, pod) = (format!("{}f", owner.name), format!("{}fp", owner.name));
        owner.add_system_netns(&ns);
        owner.add_system_netns(&pod);
        plug(underlay, &ns, "pf", ip);
        let (net, len) = split24(subnet);
        let mac = random_mac();
        sh(&format!(
            "ip -n {ns} link add flannel.1 type vxlan id 1 local {ip} dev u0 dstport 8472 nolearning && \
             ip -n {ns} link set flannel.1 address {mac} mtu 1450 && \
             ip -n {ns} addr add {net}.0/32 dev flannel.1 && ip -n {ns} link set flannel.1 up && \
             ip -n {ns} link add cni0 mtu 1450 type bridge && ip -n {ns} addr add {net}.1/{len} dev cni0 && \
             ip -n {ns} link set cni0 up && \
             ip link add eth0 netns {pod} mtu 1450 type veth peer name vethpod netns {ns} && \
             ip -n {ns} link set vethpod master cni0 up && \
             ip -n {pod} addr add {net}.2/{len} dev eth0 && ip -n {pod} link set eth0 up && \
             ip -n {pod} route add default via {net}.1 && \
             ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1"
        ));
        Flannel { ns, pod, ip: ip.to_string(), subnet: subnet.to_string(), pod_ip: format!("{net}.2"), mac }
    }

    /// The lease key's last part, e.g. `10.244.200.0-24`.
    pub(crate) fn key_name(&self) -> String {
        self.subnet.replace('/', "-")
    }

    /// Write this node's lease (an etcd lease of `ttl` seconds), as flanneld does.
    pub(crate) fn lease(&self, etcd: &Etcd, ttl: u32) {
        let id = etcd.grant(&self.ns, ttl);
        let value = format!(
            r#"{{"PublicIP":"{}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{}"}}}}"#,
            self.ip, self.mac
        );
        let key = format!("{PREFIX}/subnets/{}", self.key_name());
        etcd.ctl_ok(&self.ns, &["put", "--lease", &id, &key, &value]);
    }

    /// Program a peer for every other vxlan lease in the store, as flanneld does.
    pub(crate) fn program_peers(&self, etcd: &Etcd) {
        let own = format!("{PREFIX}/subnets/{}", self.key_name());
        for (key, value) in etcd.get_prefix(&self.ns, &format!("{PREFIX}/subnets/")) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&value) else { continue };
            if key == own || v["BackendType"] != "vxlan" {
                continue;
            }
            let subnet = key.rsplit('/').next().unwrap().replace('-', "/");
            let (net, _) = split24(&subnet);
            let (mac, public) = (v["BackendData"]["VtepMAC"].as_str().unwrap(), v["PublicIP"].as_str().unwrap());
            let ns = &self.ns;
            sh(&format!(
                "ip -n {ns} neigh replace {net}.0 lladdr {mac} dev flannel.1 nud permanent && \
                 bridge -n {ns} fdb append {mac} dev flannel.1 dst {public} && \
                 ip -n {ns} route replace {subnet} via {net}.0 dev flannel.1 onlink"
            ));
        }
    }

    /// Whether the hand-made pod gets an answer from `ip`.
    pub(crate) fn pod_reaches(&self, ip: &str) -> bool {
        std::process::Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.pod))
            // The host has no ping: busybox's (static) from the test rootfs.
            .arg(busybox_rootfs().join("bin/busybox"))
            .args(["ping", "-c1", "-w3", ip])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}
