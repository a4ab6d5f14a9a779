//! `rcon cluster …`, `rcon node …` and the hidden `rcon ipipd`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use ipnet::Ipv4Net;
use rcon::net::overlay::{self, ipip_user, Backend, InitRequest, IpipMode, Node};
use rcon::Context;

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Join this node to a cluster: its bridge network on its subnet, and the backend's device.
    Init {
        /// The whole pod range, shared by every node.
        #[arg(long)]
        cidr: Ipv4Net,
        /// This node's part of it.
        #[arg(long)]
        node_subnet: Ipv4Net,
        /// host-gw, vxlan, vxlan-l2 or ipip.
        #[arg(long)]
        backend: Backend,
        /// VXLAN network identifier (1 to 16777215).
        #[arg(long, default_value_t = overlay::DEFAULT_VNI)]
        vni: u32,
        /// VXLAN UDP port.
        #[arg(long, default_value_t = overlay::DEFAULT_PORT)]
        port: u16,
        /// The interface that reaches the other nodes (default: the default route's).
        #[arg(long)]
        underlay: Option<String>,
        /// The node's network, for `run --network` and `pod create --network`.
        #[arg(long, default_value = overlay::DEFAULT_NETWORK)]
        network: String,
        /// ipip only: kernel, userspace, or auto (the kernel's when it has ipip, else userspace).
        #[arg(long, default_value = "auto")]
        ipip_mode: IpipMode,
    },
    /// Undo `init`: peers' entries, the device, the network, the records.
    Reset {
        /// Also when containers are attached to the network (they are detached).
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Reconcile with a file (TOML or JSON): [cluster] settings and [[nodes]].
    Apply { file: PathBuf },
    /// Bring back what this node made and lost (network, device, IPIP daemon, peers' entries).
    Repair,
    /// Print this node's cluster settings as JSON.
    Inspect,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Declare a peer node.
    Add {
        name: String,
        #[arg(long)]
        underlay_ip: Ipv4Addr,
        #[arg(long)]
        subnet: Ipv4Net,
        /// The peer's VTEP MAC (default: derived from its underlay address, as rcon sets it).
        #[arg(long)]
        vtep_mac: Option<String>,
    },
    /// Forget peer nodes: their routes, FDB and neighbour entries.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the peer nodes.
    Ls,
}

pub fn cluster(ctx: &Context, cmd: ClusterCmd) -> Result<i32> {
    match cmd {
        ClusterCmd::Init { cidr, node_subnet, backend, vni, port, underlay, network, ipip_mode } => {
            let req = InitRequest { cidr, node_subnet, backend, vni, port, underlay, network, ipip_mode };
            let (c, note) = overlay::init(ctx, &req)?;
            if let Some(n) = note {
                eprintln!("rcon: note: {n}");
            }
            println!("{}", c.network);
        }
        ClusterCmd::Reset { force } => overlay::reset(ctx, force)?,
        ClusterCmd::Apply { file } => {
            for line in overlay::apply::apply(ctx, &file)? {
                println!("{line}");
            }
        }
        ClusterCmd::Repair => {
            for line in overlay::repair(ctx)? {
                println!("{line}");
            }
        }
        ClusterCmd::Inspect => {
            println!("{}", serde_json::to_string_pretty(&overlay::require(&ctx.data_root)?)?);
        }
    }
    Ok(0)
}

pub fn node(ctx: &Context, cmd: NodeCmd) -> Result<i32> {
    match cmd {
        NodeCmd::Add { name, underlay_ip, subnet, vtep_mac } => {
            overlay::add_node(ctx, &Node { name: name.clone(), underlay_ip, subnet, vtep_mac })?;
            println!("{name}");
        }
        NodeCmd::Rm { names } => {
            for n in names {
                overlay::remove_node(ctx, &n)?;
                println!("{n}");
            }
        }
        NodeCmd::Ls => {
            let c = overlay::require(&ctx.data_root)?;
            println!("{:<20} {:<16} {:<18} VTEP MAC", "NAME", "UNDERLAY IP", "SUBNET");
            println!("{:<20} {:<16} {:<18} {} (this node)", "-", c.underlay_ip, c.node_subnet.to_string(), c.vtep_mac);
            let all = overlay::peers(&ctx.data_root).scan()?;
            super::warn_broken(&all.broken);
            for b in &all.broken {
                println!("{:<20} {:<16} {:<18} broken: {}", b.name, "-", "-", b.cause);
            }
            for n in all.good {
                let mac = overlay::vtep_mac_of(&n).map(rcon::net::endpoint::format_mac).unwrap_or_default();
                println!("{:<20} {:<16} {:<18} {}", n.name, n.underlay_ip, n.subnet.to_string(), mac);
            }
        }
    }
    Ok(0)
}

/// `rcon ipipd`: the userspace IPIP daemon (started by the ipip backend).
#[derive(Args, Debug)]
pub struct IpipdArgs {
    #[arg(long)]
    pub tun: String,
    #[arg(long)]
    pub local: Ipv4Addr,
    #[arg(long)]
    pub peers: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub queues: usize,
    /// Run the data plane itself (the supervisor starts it so).
    #[arg(long)]
    pub worker: bool,
}

pub fn ipipd(a: IpipdArgs) -> Result<i32> {
    let cfg = ipip_user::Config { tun: a.tun, local: a.local, peers_file: a.peers, queues: a.queues };
    ipip_user::main(&cfg, a.worker)
}
