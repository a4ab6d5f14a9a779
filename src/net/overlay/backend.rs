//! The kernel side of each backend: this node's device, and the routes and
//! FDB and neighbour entries for one peer. Every entry is set with replace
//! semantics and removed as "gone is done", so programming twice changes
//! nothing and a half-done removal can be repeated.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::{ipip_ebpf, ipip_user, vtep_mac_of, Backend, Cluster, IpipMode, Node};
use crate::error::{self, Kind};
use crate::net::links::{Links, Request, Vxlan};
use crate::net::macaddr::Mac;

/// The device name of a VXLAN backend (`rcon-vx` + VNI fits 15 bytes).
fn vxlan_name(vni: u32) -> String {
    format!("rcon-vx{vni}")
}
const IPIP_DEV: &str = "rcon-ipip";
const TUN_DEV: &str = "rcon-tun";

/// The device this node's backend uses, if it has one.
pub fn device(c: &Cluster) -> Option<String> {
    match (c.backend, c.ipip_plane) {
        (Backend::HostGw, _) => None,
        (Backend::Vxlan | Backend::VxlanL2, _) => Some(vxlan_name(c.vni)),
        (Backend::Ipip, Some(IpipMode::Userspace)) => Some(TUN_DEV.into()),
        (Backend::Ipip, Some(IpipMode::Ebpf)) => Some(ipip_ebpf::DEV.into()),
        (Backend::Ipip, _) => Some(IPIP_DEV.into()),
    }
}

fn peers_file(data_root: &Path) -> PathBuf {
    super::dir(data_root).join("ipip-peers.json")
}

/// Make this node's device (and for userspace IPIP start its daemon).
/// Records in `c` which IPIP data plane was chosen. `bridge` is the node's
/// cluster bridge (vxlan-l2 makes the device its port).
pub fn setup(node: &dyn Links, c: &mut Cluster, bridge: &str, data_root: &Path) -> Result<Option<String>> {
    let underlay = node.require(&c.underlay)?;
    let mut note = None;
    match c.backend {
        Backend::HostGw => {}
        Backend::Vxlan | Backend::VxlanL2 => {
            let l2 = c.backend == Backend::VxlanL2;
            let mac = super::vtep_mac_for(c.underlay_ip);
            let name = vxlan_name(c.vni);
            let v = Vxlan { vni: c.vni, port: c.port, local: c.underlay_ip, underlay, learning: l2, mtu: c.mtu, mac };
            let idx = match node.create_vxlan(&name, &v) {
                Err(e) if lacks_link_type(&e) => bail!("backend {}: this kernel has no vxlan link type", c.backend),
                r => r?,
            };
            node.no_ipv6_addresses(idx)?;
            if l2 {
                node.up(idx, Some(node.require(bridge)?))?;
            } else {
                // flannel's layout: the subnet's network address, /32, is this
                // node's gateway address on the VXLAN device.
                node.add_address(idx, c.node_subnet.network(), 32)?;
                node.up(idx, None)?;
            }
        }
        Backend::Ipip => {
            let (plane, idx) = ipip_plane(node, c, underlay, bridge, &mut note)?;
            c.ipip_plane = Some(plane);
            node.no_ipv6_addresses(idx)?;
            node.add_address(idx, c.node_subnet.network(), 32)?;
            node.up(idx, None)?;
            if plane == IpipMode::Userspace {
                ipip_user::write_peers(&peers_file(data_root), &[])?;
                c.daemon = Some(ipip_user::start(&ipip_user::Config {
                    tun: TUN_DEV.into(),
                    local: c.underlay_ip,
                    peers_file: peers_file(data_root),
                    queues: 2,
                })?);
            }
        }
    }
    Ok(note)
}

/// Make the device of the IPIP data plane that `c.ipip_mode` asks for;
/// `auto` tries the kernel's ipip, then eBPF, then userspace, and says in
/// `note` why it passed over the ones it did. Returns the plane and its
/// device's index.
fn ipip_plane(
    node: &dyn Links,
    c: &Cluster,
    underlay: u32,
    bridge: &str,
    note: &mut Option<String>,
) -> Result<(IpipMode, u32)> {
    let auto = c.ipip_mode == IpipMode::Auto;
    let mut skipped = Vec::new();
    if matches!(c.ipip_mode, IpipMode::Auto | IpipMode::Kernel) {
        match node.create_ipip(IPIP_DEV, c.underlay_ip, underlay, c.mtu) {
            Ok(idx) => return Ok((IpipMode::Kernel, idx)),
            Err(e) if lacks_link_type(&e) && auto => {
                skipped.push("this kernel has no ipip link type (ipip.ko)".to_string())
            }
            Err(e) if lacks_link_type(&e) => bail!(
                "--ipip-mode kernel: this kernel has no ipip link type (ipip.ko is not loaded); \
                 use --ipip-mode auto, ebpf or userspace"
            ),
            Err(e) => return Err(e),
        }
    }
    if matches!(c.ipip_mode, IpipMode::Auto | IpipMode::Ebpf) {
        match ipip_ebpf::setup(node, c, bridge) {
            Ok(idx) => {
                *note =
                    (!skipped.is_empty()).then(|| format!("{}: using rcon's eBPF IPIP data plane", skipped.join("; ")));
                return Ok((IpipMode::Ebpf, idx));
            }
            Err(e) if auto => skipped.push(format!("no eBPF IPIP ({e:#})")),
            Err(e) => return Err(e.context("--ipip-mode ebpf")),
        }
    }
    if !skipped.is_empty() {
        *note = Some(format!("{}: using rcon's userspace IPIP data plane", skipped.join("; ")));
    }
    ipip_user::create_tun(TUN_DEV, c.mtu)?;
    Ok((IpipMode::Userspace, node.require(TUN_DEV)?))
}

/// The kernel's answer to a link kind it does not know (rtnl_newlink finds
/// no ops and cannot load a module). Any other error is a real one.
fn lacks_link_type(e: &anyhow::Error) -> bool {
    error::errno(e) == Some(libc::EOPNOTSUPP)
}

/// Remove this node's device (and stop the userspace daemon).
pub fn teardown(node: &dyn Links, c: &Cluster, data_root: &Path) -> Result<()> {
    if let Some(d) = c.daemon {
        ipip_user::stop(d)?;
    }
    if c.backend == Backend::Ipip {
        // A crash between starting the daemon and recording it leaves one
        // that only its command line names.
        for pid in daemons_of(&peers_file(data_root)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    // For ipip, either data plane's device may have been made before a
    // crash recorded which one.
    let devices = match c.backend {
        Backend::Ipip => vec![TUN_DEV.to_string(), IPIP_DEV.to_string()],
        _ => device(c).into_iter().collect(),
    };
    for dev in devices {
        node.delete_by_name(&dev)?;
    }
    // The eBPF plane also has a filter on the underlay: removed when it is
    // the plane in use, or when a crash left its device unrecorded.
    let ebpf = match c.ipip_plane {
        Some(IpipMode::Ebpf) => true,
        None => c.backend == Backend::Ipip && node.index(ipip_ebpf::DEV)?.is_some(),
        Some(_) => false,
    };
    if ebpf {
        ipip_ebpf::teardown(node, c)?;
    }
    let _ = std::fs::remove_file(peers_file(data_root));
    Ok(())
}

/// The `rcon ipipd` processes (supervisors and workers) serving `peers_file`.
fn daemons_of(peers_file: &Path) -> Vec<i32> {
    let want = peers_file.as_os_str().as_encoded_bytes();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.get(1) == Some(&&b"ipipd"[..]) && args.windows(2).any(|w| w[0] == b"--peers" && w[1] == want)
        })
        .collect()
}

/// Reach `peer` from this node.
pub fn program(node: &dyn Links, c: &Cluster, peer: &Node) -> Result<()> {
    let ctx = || format!("node {}", peer.name);
    if c.backend == Backend::VxlanL2 {
        let dev = node.require(&vxlan_name(c.vni))?;
        return match node.send_one(Request::set_fdb(dev, Mac::default(), peer.underlay_ip, true)) {
            // Already among the entry's destinations.
            Err(e) if error::kind(&e) == Some(Kind::Exists) => Ok(()),
            r => r.with_context(ctx),
        };
    }
    let dev = node.require(&device(c).unwrap_or_else(|| c.underlay.clone()))?;
    requests(c, dev, peer)?.into_iter().try_for_each(|r| node.send_one(r)).with_context(ctx)
}

/// Reach every peer of `peers`, their requests sent together (the agent's
/// batches): each peer's result, in order.
pub fn program_all(node: &dyn Links, c: &Cluster, peers: &[Node]) -> Vec<Result<()>> {
    if c.backend == Backend::VxlanL2 {
        return peers.iter().map(|p| program(node, c, p)).collect();
    }
    let dev = match node.require(&device(c).unwrap_or_else(|| c.underlay.clone())) {
        Ok(d) => d,
        Err(e) => return peers.iter().map(|_| Err(anyhow::anyhow!("{e:#}"))).collect(),
    };
    let mut out: Vec<Result<()>> = Vec::with_capacity(peers.len());
    let mut batch = Vec::new();
    // (index into `out`, how many requests) of the peers in the batch.
    let mut owners = Vec::new();
    for p in peers {
        match requests(c, dev, p) {
            Ok(rs) => {
                owners.push((out.len(), rs.len()));
                batch.extend(rs);
                out.push(Ok(()));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    let mut answers = node.send_all(batch).into_iter();
    for (i, n) in owners {
        let failed = answers.by_ref().take(n).find_map(Result::err);
        if let Some(e) = failed {
            out[i] = Err(e).with_context(|| format!("node {}", peers[i].name));
        }
    }
    out
}

/// The requests that reach `peer` over the backend's device `dev` (the
/// underlay for host-gw); not for vxlan-l2, whose one entry may exist.
fn requests(c: &Cluster, dev: u32, peer: &Node) -> Result<Vec<Request>> {
    Ok(match (c.backend, c.ipip_plane) {
        (Backend::HostGw, _) => vec![Request::set_route(peer.subnet, Some(peer.underlay_ip), dev, false)],
        (Backend::Vxlan, _) => {
            let (mac, gw) = (vtep_mac_of(peer), peer.subnet.network());
            vec![
                Request::set_neighbour(dev, gw, mac),
                Request::set_fdb(dev, mac, peer.underlay_ip, false),
                Request::set_route(peer.subnet, Some(gw), dev, true),
            ]
        }
        (Backend::Ipip, Some(IpipMode::Userspace)) => vec![Request::set_route(peer.subnet, None, dev, false)],
        // The egress program ignores the Ethernet header: the gateway's
        // entry only spares the kernel an ARP that nothing would answer.
        (Backend::Ipip, Some(IpipMode::Ebpf)) => {
            let gw = peer.subnet.network();
            vec![
                Request::set_neighbour(dev, gw, ipip_ebpf::dev_mac(c)),
                Request::set_route(peer.subnet, Some(gw), dev, true),
            ]
        }
        (Backend::Ipip, _) => vec![Request::set_route(peer.subnet, Some(peer.underlay_ip), dev, true)],
        (Backend::VxlanL2, _) => bail!("vxlan-l2 peers are programmed one by one"),
    })
}

/// Forget `peer`: its route, FDB and neighbour entries.
pub fn unprogram(node: &dyn Links, c: &Cluster, peer: &Node) -> Result<()> {
    let ctx = || format!("node {}", peer.name);
    let dev = device(c).map(|d| node.index(&d)).transpose()?.flatten();
    match (c.backend, dev) {
        // The replication entry, and what the device learned behind the peer.
        (Backend::VxlanL2, Some(dev)) => node
            .fdb_macs_to(dev, peer.underlay_ip)?
            .into_iter()
            .try_for_each(|mac| node.del_fdb(dev, mac, peer.underlay_ip))
            .with_context(ctx),
        (Backend::Vxlan, Some(dev)) => {
            node.del_route(peer.subnet).with_context(ctx)?;
            node.del_fdb(dev, vtep_mac_of(peer), peer.underlay_ip).with_context(ctx)?;
            node.del_neighbour(dev, peer.subnet.network()).with_context(ctx)
        }
        (Backend::Ipip, Some(dev)) if c.ipip_plane == Some(IpipMode::Ebpf) => {
            node.del_route(peer.subnet).with_context(ctx)?;
            node.del_neighbour(dev, peer.subnet.network()).with_context(ctx)
        }
        _ => node.del_route(peer.subnet).with_context(ctx),
    }
}

/// Tell the IPIP data plane the current peers: the eBPF programs' maps,
/// or the userspace daemon's peers file.
pub fn sync_plane(node: &dyn Links, c: &Cluster, peers: &[Node], data_root: &Path) -> Result<()> {
    if c.backend == Backend::Ipip && c.ipip_plane == Some(IpipMode::Ebpf) {
        return ipip_ebpf::sync(node, c, peers);
    }
    let Some(d) = c.daemon else { return Ok(()) };
    let list: Vec<ipip_user::Peer> =
        peers.iter().map(|n| ipip_user::Peer { subnet: n.subnet, underlay_ip: n.underlay_ip }).collect();
    ipip_user::write_peers(&peers_file(data_root), &list)?;
    ipip_user::reload(d)
}
