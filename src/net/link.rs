//! The one place that speaks rtnetlink: links, addresses and routes.
//!
//! A `Netlink` is bound to one network namespace: its socket is opened while
//! the calling thread is inside that namespace and stays bound to it, so a
//! command can hold one for the node and one for a container and use both
//! without moving threads around. Each has its own current-thread tokio
//! runtime; rcon never runs netlink on a shared worker pool.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

use super::links::{Links, Request, Route, Veth, Vxlan};
use crate::error::{self, Kind};
use crate::net::macaddr::Mac;
use anyhow::{Context as _, Result};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::packet_route::{AddressFamily as NlFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Linux interface names hold at most 15 bytes.
pub const IFNAMSIZ_MAX: usize = 15;

pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
    /// The namespace this socket is in, when it is not the calling thread's:
    /// /proc/sys/net follows the thread, so a sysctl is written from inside it.
    ns: Option<File>,
}

/// rtnetlink errors carry only the errno: turn them into io errors so the
/// context added by callers reads "creating veth rv12: File exists".
fn nl(e: rtnetlink::Error) -> anyhow::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().into(),
        other => anyhow::anyhow!("{other}"),
    }
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn current() -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().context("tokio runtime")?;
        let _in = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        rt.spawn(conn);
        Ok(Netlink { rt, handle, ns: None })
    }

    /// A socket in the namespace of `ns` (a netns file): enter, open, leave.
    pub fn in_netns(ns: &File) -> Result<Netlink> {
        let mut nl = {
            let _back = super::netns::enter(ns.as_fd())?;
            Netlink::current()?
        };
        nl.ns = Some(ns.try_clone().context("keeping the netns file")?);
        Ok(nl)
    }

    fn block<T>(&self, f: impl std::future::Future<Output = Result<T, rtnetlink::Error>>) -> Result<T> {
        self.rt.block_on(f).map_err(nl)
    }

    fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let req = self.handle.link().get().match_name(name.to_string()).execute();
        match self.rt.block_on(async {
            futures::pin_mut!(req);
            req.try_next().await
        }) {
            Ok(m) => Ok(m),
            Err(e) => {
                let e = nl(e);
                if error::is_not_found(&e) {
                    Ok(None)
                } else {
                    Err(e).with_context(|| format!("looking up link {name}"))
                }
            }
        }
    }

    /// Send one request with these netlink flags and wait for the kernel's answer.
    fn request(&self, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.rt.block_on(send(self.handle.clone(), msg, flags)).map_err(nl)
    }

    fn fdb_message(index: u32, mac: Mac, dst: Ipv4Addr) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = NlFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.flags = NeighbourFlags::Own;
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
        m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        m
    }

    /// A prepared request as its netlink message and flags.
    fn message(r: &Request) -> (RouteNetlinkMessage, u16) {
        match *r {
            Request::Route { dest, via, dev, onlink } => {
                (RouteNetlinkMessage::NewRoute(route_message(dest, via, dev, onlink)), NLM_F_CREATE | NLM_F_REPLACE)
            }
            Request::Neighbour { index, ip, mac } => {
                let mut m = NeighbourMessage::default();
                m.header.family = NlFamily::Inet;
                m.header.ifindex = index;
                m.header.state = NeighbourState::Permanent;
                m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
                m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
                (RouteNetlinkMessage::NewNeighbour(m), NLM_F_CREATE | NLM_F_REPLACE)
            }
            Request::Fdb { index, mac, dst, append } => {
                let how = if append { NLM_F_APPEND } else { NLM_F_REPLACE };
                (RouteNetlinkMessage::NewNeighbour(Self::fdb_message(index, mac, dst)), NLM_F_CREATE | how)
            }
        }
    }

    /// Run `f` inside this socket's namespace (it is the calling thread's when `ns` is None).
    fn inside<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _back = self.ns.as_ref().map(|ns| super::netns::enter(ns.as_fd())).transpose()?;
        f()
    }
}

impl Netlink {
    /// The tc BPF filters on link `index`'s clsact ingress (or egress) hook:
    /// each one's program name and id. A link without clsact has none.
    pub fn bpf_filters(&self, index: u32, ingress: bool) -> Result<Vec<(String, u32)>> {
        use rtnetlink::packet_route::tc::{TcAttribute, TcFilterBpfOption, TcOption};
        let req = self.handle.traffic_filter(index as i32).get();
        let req = if ingress { req.ingress() } else { req.egress() };
        let msgs: Vec<_> = match self.rt.block_on(req.execute().try_collect::<Vec<_>>()) {
            Err(e) => {
                let e = nl(e);
                return match error::errno(&e) {
                    Some(libc::EINVAL | libc::ENOENT) => Ok(Vec::new()),
                    _ => Err(e).with_context(|| format!("listing the tc filters of link {index}")),
                };
            }
            Ok(m) => m,
        };
        let mut out = Vec::new();
        for m in msgs {
            let (mut name, mut id) = (None, None);
            for a in &m.attributes {
                let TcAttribute::Options(opts) = a else { continue };
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                        TcOption::Bpf(TcFilterBpfOption::ProgId(i)) => id = Some(*i),
                        _ => {}
                    }
                }
            }
            if let (Some(n), Some(i)) = (name, id) {
                out.push((n, i));
            }
        }
        Ok(out)
    }
}

impl Links for Netlink {
    fn in_netns(&self, ns: &File) -> Result<Box<dyn Links>> {
        Ok(Box::new(Netlink::in_netns(ns)?))
    }

    fn tc_programs(&self, index: u32, ingress: bool) -> Result<Vec<(String, u32)>> {
        self.bpf_filters(index, ingress)
    }

    fn index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link_by_name(name)?.map(|m| m.header.index))
    }

    fn link_names(&self) -> Result<Vec<String>> {
        let req = self.handle.link().get().execute();
        let msgs: Vec<LinkMessage> = self.rt.block_on(req.try_collect()).map_err(nl).context("listing links")?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    fn mtu_of(&self, index: u32) -> Result<Option<u32>> {
        let req = self.handle.link().get().match_index(index).execute();
        let msg = self
            .rt
            .block_on(async {
                futures::pin_mut!(req);
                req.try_next().await
            })
            .map_err(nl)?;
        Ok(msg.and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(v) => Some(*v),
                _ => None,
            })
        }))
    }

    /// A bridge, up, with a fixed MAC (so it does not follow its ports).
    fn create_bridge(&self, name: &str, mac: Mac, mtu: u32) -> Result<u32> {
        let msg = LinkBridge::new(name).address(mac.octets().to_vec()).mtu(mtu).build();
        self.block(self.handle.link().add(msg).execute()).with_context(|| format!("creating bridge {name}"))?;
        self.require(name)
    }

    fn create_veth(&self, v: &Veth) -> Result<u32> {
        let (local, peer) = (v.local, v.peer);
        let peer_msg = LinkUnspec::new_with_name(peer)
            .address(v.peer_mac.octets().to_vec())
            .mtu(v.mtu)
            .setns_by_fd(v.peer_ns.as_raw_fd())
            .build();
        let mut msg = LinkVeth::new(local, peer).mtu(v.mtu);
        if let Some(m) = v.local_mac {
            msg = msg.address(m.octets().to_vec());
        }
        let msg = msg
            .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
                rtnetlink::packet_route::link::InfoVeth::Peer(peer_msg),
            ))
            .build();
        self.block(self.handle.link().add(msg).execute())
            .with_context(|| format!("creating veth pair {local}/{peer}"))?;
        self.require(local)
    }

    /// IPv6 address generation off (`addrgenmode none`) on a link that is
    /// still down. rcon's networks are IPv4-only (as Docker's containers on
    /// IPv4-only networks): otherwise a container's eth0 coming up makes a
    /// link-local address and sends DAD and MLD packets that the bridge
    /// floods to every port, for every other container's stack to handle:
    /// work that grows with the number of containers. IPv6 itself stays on,
    /// so a user may still add addresses by hand. The kernel refuses this
    /// attribute when the link is made, hence a message of its own.
    fn no_ipv6_addresses(&self, index: u32) -> Result<()> {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]));
        match self.block(self.handle.link().set(msg).execute()) {
            // A kernel without IPv6 has nothing to turn off.
            Err(e) if error::kind(&e) == Some(Kind::Unsupported) => Ok(()),
            r => r.with_context(|| format!("turning off IPv6 addresses on link {index}")),
        }
    }

    /// Enslave to `master` (when given) and bring up.
    fn up(&self, index: u32, master: Option<u32>) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index).up();
        if let Some(m) = master {
            b = b.controller(m);
        }
        self.block(self.handle.link().set(b.build()).execute()).with_context(|| format!("bringing up link {index}"))
    }

    /// Rename a link (it must be down) and optionally move it to another namespace.
    fn rename_into(&self, index: u32, name: &str, ns: Option<&File>) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index).name(name);
        if let Some(ns) = ns {
            b = b.setns_by_fd(ns.as_raw_fd());
        }
        self.block(self.handle.link().set(b.build()).execute()).with_context(|| format!("moving link to {name}"))
    }

    fn set_address(&self, index: u32, mac: Mac) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).address(mac.octets().to_vec()).build();
        self.block(self.handle.link().set(msg).execute()).context("setting the MAC address")
    }

    /// Hairpin (published-port hairpin needs it) and port isolation (icc=false).
    fn bridge_port(&self, index: u32, hairpin: bool, isolated: bool) -> Result<()> {
        let msg = LinkBridgePort::new(index).hairpin(hairpin).isolated(isolated).build();
        self.block(self.handle.link().set_port(msg).execute()).context("setting bridge port flags")
    }

    fn delete_link(&self, index: u32) -> Result<()> {
        self.block(self.handle.link().del(index).execute()).with_context(|| format!("deleting link {index}"))
    }

    fn add_address(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        self.block(self.handle.address().add(index, ip.into(), prefix).execute())
            .with_context(|| format!("adding address {ip}/{prefix}"))
    }

    /// Add a route: via a gateway (`onlink` when the gateway is not in a
    /// local subnet), or straight out of the device (scope link).
    fn add_route(&self, dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32, onlink: bool) -> Result<()> {
        let msg = route_message(dest, via, dev, onlink);
        self.block(self.handle.route().add(msg).execute()).with_context(|| route_text("adding", dest, via))
    }

    /// A permanent neighbour entry (ip lladdr MAC nud permanent).
    fn add_neighbour(&self, index: u32, ip: Ipv4Addr, mac: Mac) -> Result<()> {
        let req = self
            .handle
            .neighbours()
            .add(index, ip.into())
            .link_layer_address(&mac.octets())
            .state(rtnetlink::packet_route::neighbour::NeighbourState::Permanent);
        self.block(req.execute()).with_context(|| format!("adding neighbour {ip}"))
    }

    fn create_vxlan(&self, name: &str, v: &Vxlan) -> Result<u32> {
        let msg = rtnetlink::LinkVxlan::new(name, v.vni)
            .port(v.port)
            .local(v.local)
            .dev(v.underlay)
            .learning(v.learning)
            .mtu(v.mtu)
            .address(v.mac.octets().to_vec())
            .build();
        self.block(self.handle.link().add(msg).execute()).with_context(|| format!("creating vxlan device {name}"))?;
        self.require(name)
    }

    /// A kernel ipip device with no fixed remote: each peer is reached by an
    /// onlink route via its underlay address (as `tunl0` is used). Left down.
    fn create_ipip(&self, name: &str, local: Ipv4Addr, underlay: u32, mtu: u32) -> Result<u32> {
        let msg = rtnetlink::LinkIpIp::new(name).local(local).dev(underlay).pmtudisc(true).mtu(mtu).build();
        self.block(self.handle.link().add(msg).execute()).with_context(|| format!("creating ipip device {name}"))?;
        self.require(name)
    }

    /// Send `reqs` together, a window of them in flight on the one socket,
    /// and return each one's answer in order: a thousand peers' entries
    /// cost the kernel's work and not a round trip each.
    fn send_all(&self, reqs: Vec<Request>) -> Vec<Result<()>> {
        use futures::StreamExt as _;
        // The window keeps the kernel's answers within the socket's receive
        // buffer: an answer dropped for want of room would never come.
        const IN_FLIGHT: usize = 128;
        let handle = self.handle.clone();
        let sends = reqs.into_iter().map(|r| {
            let h = handle.clone();
            let (msg, flags) = Self::message(&r);
            async move { send(h, msg, flags).await.map_err(nl).with_context(|| r.what()) }
        });
        self.rt.block_on(futures::stream::iter(sends).buffered(IN_FLIGHT).collect())
    }

    /// Send one prepared request.
    fn send_one(&self, r: Request) -> Result<()> {
        let (msg, flags) = Self::message(&r);
        self.request(msg, flags).with_context(|| r.what())
    }

    fn del_fdb(&self, index: u32, mac: Mac, dst: Ipv4Addr) -> Result<()> {
        ignore_gone(self.request(RouteNetlinkMessage::DelNeighbour(Self::fdb_message(index, mac, dst)), 0))
            .with_context(|| format!("deleting fdb entry {mac} dst {dst}"))
    }

    /// The MACs of a device's own forwarding entries that point at `dst`
    /// (static or learned).
    fn fdb_macs_to(&self, index: u32, dst: Ipv4Addr) -> Result<Vec<Mac>> {
        let req = self.handle.neighbours().get().set_address_family(NlFamily::Bridge).execute();
        let msgs: Vec<NeighbourMessage> = self.rt.block_on(req.try_collect()).map_err(nl).context("listing fdb")?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            // For AF_BRIDGE messages the parser cannot tell the address family: raw bytes.
            .filter(|m| {
                m.attributes.iter().any(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => *ip == dst,
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => b[..] == dst.octets(),
                    _ => false,
                })
            })
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok().map(Mac),
                    _ => None,
                })
            })
            .collect())
    }

    fn del_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = NlFamily::Inet;
        m.header.ifindex = index;
        m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        ignore_gone(self.request(RouteNetlinkMessage::DelNeighbour(m), 0))
            .with_context(|| format!("deleting neighbour {ip}"))
    }

    fn del_route(&self, dest: Ipv4Net) -> Result<()> {
        // Scope "nowhere" matches a route of any scope, as `ip route del` does.
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest.network(), dest.prefix_len())
            .scope(RouteScope::NoWhere)
            .build();
        ignore_gone(self.block(self.handle.route().del(msg).execute()))
            .with_context(|| format!("deleting route {dest}"))
    }

    /// The IPv4 addresses (with their prefixes) of link `index`.
    fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>> {
        let req = self.handle.address().get().set_link_index_filter(index).execute();
        let msgs: Vec<AddressMessage> = self.rt.block_on(req.try_collect()).map_err(nl).context("listing addresses")?;
        Ok(msgs.iter().filter(|m| m.header.index == index).filter_map(v4_local).collect())
    }

    /// Every IPv4 address of the namespace, with the name of its link (the
    /// address's label), in one dump.
    fn all_ipv4_addresses(&self) -> Result<Vec<(String, Ipv4Addr)>> {
        let req = self.handle.address().get().execute();
        let msgs: Vec<AddressMessage> = self.rt.block_on(req.try_collect()).map_err(nl).context("listing addresses")?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let label = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Label(l) => Some(l.clone()),
                    _ => None,
                });
                Some((label.unwrap_or_else(|| format!("link {}", m.header.index)), v4_local(m)?.addr()))
            })
            .collect())
    }

    /// The IPv4 routes of the main table.
    fn routes(&self) -> Result<Vec<Route>> {
        let req = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let msgs: Vec<RouteMessage> = self.rt.block_on(req.try_collect()).map_err(nl).context("listing routes")?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.table == 254)
            .map(|m| {
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                let oif = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let dest = Ipv4Net::new(dst.unwrap_or(Ipv4Addr::UNSPECIFIED), m.header.destination_prefix_length)
                    .unwrap_or_default();
                Route { dest, oif }
            })
            .collect())
    }

    fn delete_detached(&self, name: &str) -> Result<()> {
        delete_detached(self.ns.as_ref(), name)
    }

    fn sysctl(&self, key: &str) -> Result<String> {
        let p = format!("/proc/sys/net/{key}");
        self.inside(|| Ok(std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?.trim().to_string()))
    }

    fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let p = format!("/proc/sys/net/{key}");
        self.inside(|| std::fs::write(&p, value).with_context(|| format!("writing {value} to {p}")))
    }
}

/// Send one request and wait for its acknowledgement.
async fn send(mut handle: Handle, msg: RouteNetlinkMessage, flags: u16) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut resp = handle.request(req)?;
    while let Some(m) = futures::StreamExt::next(&mut resp).await {
        if let NetlinkPayload::Error(e) = m.payload {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

fn route_message(dest: Ipv4Net, via: Option<Ipv4Addr>, dev: u32, onlink: bool) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dest.network(), dest.prefix_len())
        .output_interface(dev);
    b = match via {
        Some(gw) => b.gateway(gw),
        None => b.scope(RouteScope::Link),
    };
    if onlink {
        b = b.onlink();
    }
    b.build()
}

fn route_text(verb: &str, dest: Ipv4Net, via: Option<Ipv4Addr>) -> String {
    match via {
        Some(gw) => format!("{verb} route {dest} via {gw}"),
        None => format!("{verb} route {dest}"),
    }
}

/// Deleting what is already gone is done.
fn ignore_gone(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if error::is_not_found(&e) => Ok(()),
        r => r,
    }
}

/// An address message's local IPv4 address with its prefix.
fn v4_local(m: &AddressMessage) -> Option<Ipv4Net> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Ipv4Net::new(*ip, m.header.prefix_len).ok(),
        _ => None,
    })
}

/// Delete the link `name` from a forked child and return at once: the kernel
/// takes about 20 ms to unregister a veth and nothing needs to wait for it.
/// A child that dies first leaves a link without a record, which gc removes.
/// `ns`: the namespace of the link, when it is not the calling thread's.
fn delete_detached(ns: Option<&File>, name: &str) -> Result<()> {
    use nix::unistd::{fork, ForkResult};
    // SAFETY: rcon runs single-threaded here (current-thread runtimes only, and the threads it starts
    // elsewhere are joined before they return), so the child's copy holds no lock another thread had.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { .. } => Ok(()),
        ForkResult::Child => {
            // Let go of the caller's pipes at once, so nobody reading our
            // output waits for the kernel.
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                for fd in 0..3 {
                    // SAFETY: no memory is passed; fds 0-2 are stdio, which nothing in this process owns as an
                    // OwnedFd, so pointing them at another open file breaks no owner.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            let _ = nix::unistd::setsid();
            let nl = match ns {
                Some(ns) => Netlink::in_netns(ns),
                None => Netlink::current(),
            };
            let ok = nl.and_then(|n| n.delete_by_name(name)).is_ok();
            // SAFETY: _exit takes an integer and ends the child at once, so the caller's Drops and atexit
            // handlers, copied by fork, do not run a second time.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
    }
}
