//! `rcon cluster …`, `rcon node …` and the hidden `rcon ipipd`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use rcon::net::macaddr::Mac;
use rcon::net::overlay::etcd::{Endpoint, DEFAULT_PREFIX};
use rcon::net::overlay::flannel::{BackendConfig, NetConfig};
use rcon::net::overlay::member::{self, JoinRequest};
use rcon::net::overlay::{self, agent, ipip_user, Backend, InitRequest, IpipMode, Node};
use rcon::Context;

/// Where etcd is (every etcd-mode command takes these).
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// etcd client URLs, comma separated.
    #[arg(long, env = "RCON_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// The key prefix of the network config and leases (flannel's).
    #[arg(long, env = "RCON_ETCD_PREFIX")]
    etcd_prefix: Option<String>,
    /// The CA that signed etcd's certificate (TLS).
    #[arg(long, env = "RCON_ETCD_CAFILE")]
    etcd_cafile: Option<PathBuf>,
    /// This node's client certificate (TLS client authentication).
    #[arg(long, env = "RCON_ETCD_CERTFILE")]
    etcd_certfile: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, env = "RCON_ETCD_KEYFILE")]
    etcd_keyfile: Option<PathBuf>,
}

impl EtcdArgs {
    fn endpoint(&self) -> Result<Endpoint> {
        if self.etcd_endpoints.is_empty() {
            bail!("no etcd endpoints: give --etcd-endpoints URLS or set RCON_ETCD_ENDPOINTS");
        }
        let prefix = self.etcd_prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into());
        if !prefix.starts_with('/') || prefix.len() < 2 {
            bail!("--etcd-prefix {prefix:?}: use a key path such as {DEFAULT_PREFIX}");
        }
        Ok(Endpoint {
            endpoints: self.etcd_endpoints.clone(),
            prefix: prefix.trim_end_matches('/').to_string(),
            cafile: self.etcd_cafile.clone(),
            certfile: self.etcd_certfile.clone(),
            keyfile: self.etcd_keyfile.clone(),
        })
    }
}

/// Where a node's peers come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Store {
    /// Declared by hand (`node add`, `cluster apply`).
    #[default]
    Static,
    /// flannel's subnet leases in etcd, watched by `rcon cluster agent`.
    Etcd,
}

fn duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{e} (use 30s, 5m, 24h)")),
    }
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum ConfigCmd {
    /// Write the cluster's network config (flannel's JSON) to etcd.
    Set {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// The whole pod range (flannel's Network).
        #[arg(long)]
        cidr: Ipv4Net,
        /// The length of each node's subnet (SubnetLen).
        #[arg(long, default_value_t = 24)]
        subnet_len: u8,
        /// host-gw, vxlan, vxlan-l2 or ipip.
        #[arg(long)]
        backend: Backend,
        /// VXLAN network identifier (default 1).
        #[arg(long)]
        vni: Option<u32>,
        /// VXLAN UDP port (default 8472, flannel's).
        #[arg(long)]
        port: Option<u16>,
        /// The first subnet that may be leased (SubnetMin).
        #[arg(long)]
        subnet_min: Option<Ipv4Addr>,
        /// The last subnet that may be leased (SubnetMax).
        #[arg(long)]
        subnet_max: Option<Ipv4Addr>,
    },
    /// Print the cluster's network config from etcd.
    Get {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum ClusterCmd {
    /// Join this node to a cluster: its bridge network on its subnet, and the backend's device.
    Init {
        /// static (peers declared by hand) or etcd (flannel's leases, watched by `cluster agent`).
        #[arg(long, value_enum, default_value_t = Store::Static)]
        store: Store,
        #[command(flatten)]
        etcd: EtcdArgs,
        /// The whole pod range, shared by every node (static).
        #[arg(long)]
        cidr: Option<Ipv4Net>,
        /// This node's part of it (etcd: ask for this subnet).
        #[arg(long)]
        node_subnet: Option<Ipv4Net>,
        /// host-gw, vxlan, vxlan-l2 or ipip (static).
        #[arg(long)]
        backend: Option<Backend>,
        /// etcd: this node's address for the others (one of the underlay's; default its first).
        #[arg(long)]
        public_ip: Option<Ipv4Addr>,
        /// etcd: the lifetime of this node's lease (renewed by the agent).
        #[arg(long, value_parser = duration, default_value = "24h")]
        lease_ttl: Duration,
        /// etcd: where to write flannel's subnet.env (default: RCON_ROOT/.cluster/subnet.env).
        #[arg(long)]
        subnet_file: Option<PathBuf>,
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
        /// ipip only: kernel, ebpf, userspace, or auto (the kernel's when it has ipip, else ebpf, else userspace).
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
    /// The cluster's network config in etcd.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The node agent (etcd mode), in the foreground: keeps this node's lease and programs its peers.
    Agent {
        /// Each defaults to what `cluster init` was given.
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
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
    /// Forget peer nodes: their routes, FDB and neighbour entries (etcd: delete their leases;
    /// NAME, SUBNET or public IP).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List the peer nodes.
    Ls,
}

pub fn cluster(ctx: &Context, cmd: ClusterCmd) -> Result<i32> {
    match cmd {
        ClusterCmd::Init {
            store: Store::Etcd,
            etcd,
            cidr,
            backend,
            node_subnet,
            public_ip,
            lease_ttl,
            subnet_file,
            underlay,
            network,
            ipip_mode,
            ..
        } => {
            if cidr.is_some() || backend.is_some() {
                bail!("--store etcd: the range and backend come from the config in etcd (`rcon cluster config set`); drop --cidr and --backend");
            }
            let req = JoinRequest {
                at: etcd.endpoint()?,
                underlay,
                public_ip,
                node_subnet,
                lease_ttl,
                network,
                ipip_mode,
                subnet_file: subnet_file.unwrap_or_else(|| ctx.root.join(".cluster").join("subnet.env")),
            };
            let (c, note) = member::join(ctx, &req)?;
            if let Some(n) = note {
                eprintln!("rcon: note: {n}");
            }
            eprintln!("rcon: leased {} ({}, {})", c.node_subnet, c.backend, c.underlay_ip);
            println!("{}", c.network);
        }
        ClusterCmd::Init { cidr, node_subnet, backend, vni, port, underlay, network, ipip_mode, public_ip, .. } => {
            if public_ip.is_some() {
                bail!("--public-ip is for --store etcd (the static mode takes the underlay's address)");
            }
            let (Some(cidr), Some(node_subnet), Some(backend)) = (cidr, node_subnet, backend) else {
                bail!("cluster init needs --cidr, --node-subnet and --backend (or --store etcd)");
            };
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
        ClusterCmd::Config(ConfigCmd::Set { etcd, cidr, subnet_len, backend, vni, port, subnet_min, subnet_max }) => {
            let cfg = NetConfig {
                network: cidr,
                subnet_len: Some(subnet_len),
                subnet_min,
                subnet_max,
                backend: BackendConfig { kind: backend.to_string(), vni, port, rest: Default::default() },
                rest: Default::default(),
            };
            member::set_config(&etcd.endpoint()?, &cfg)?;
            println!("{}", serde_json::to_string(&cfg)?);
        }
        ClusterCmd::Config(ConfigCmd::Get { etcd }) => {
            println!("{}", serde_json::to_string(&member::get_config(&etcd.endpoint()?)?)?);
        }
        ClusterCmd::Agent { etcd } => {
            let over = agent::Overrides {
                endpoints: (!etcd.etcd_endpoints.is_empty()).then_some(etcd.etcd_endpoints),
                prefix: etcd.etcd_prefix,
                cafile: etcd.etcd_cafile,
                certfile: etcd.etcd_certfile,
                keyfile: etcd.etcd_keyfile,
            };
            agent::run(ctx, &over)?;
        }
    }
    Ok(0)
}

/// This node's etcd membership, if it joined in the etcd mode.
fn membership(ctx: &Context) -> Result<Option<overlay::Membership>> {
    Ok(overlay::require(&ctx.data_root)?.store)
}

/// `rcon node ls` in the etcd mode: every lease in the store.
fn list_leases(c: &overlay::Cluster, m: &overlay::Membership) -> Result<()> {
    let rows = member::leases(&m.at)?;
    println!("{:<18} {:<16} {:<9} {:<18} TTL", "SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC");
    for r in rows {
        let ttl =
            r.ttl.map_or("-".to_string(), |s| humantime::format_duration(Duration::from_secs(s as u64)).to_string());
        let subnet = r.subnet.map_or(r.name.clone(), |s| s.to_string());
        let mine = if r.subnet == Some(c.node_subnet) { " (this node)" } else { "" };
        match r.attrs {
            Ok(a) => {
                let mac = a.backend_data.and_then(|d| d.vtep_mac).unwrap_or_else(|| "-".into());
                println!("{subnet:<18} {:<16} {:<9} {mac:<18} {ttl}{mine}", a.public_ip.to_string(), a.backend_type);
            }
            Err(why) => println!("{subnet:<18} {:<16} {:<9} {:<18} {ttl} broken: {why}", "-", "-", "-"),
        }
    }
    Ok(())
}

pub fn node(ctx: &Context, cmd: NodeCmd) -> Result<i32> {
    match cmd {
        NodeCmd::Add { name, underlay_ip, subnet, vtep_mac } => {
            let vtep_mac = vtep_mac
                .as_deref()
                .map(|m| Mac::for_interface(m).with_context(|| format!("node {name}: --vtep-mac")))
                .transpose()?;
            overlay::add_node(ctx, &Node { name: name.clone(), underlay_ip, subnet, vtep_mac })?;
            println!("{name}");
        }
        NodeCmd::Rm { names } if membership(ctx)?.is_some() => {
            let m = membership(ctx)?.context("etcd mode")?;
            for n in names {
                println!("{}", member::remove_lease(&m.at, &n)?);
            }
        }
        NodeCmd::Ls if membership(ctx)?.is_some() => {
            let c = overlay::require(&ctx.data_root)?;
            list_leases(&c, c.store.as_ref().context("etcd mode")?)?;
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
                let mac = overlay::vtep_mac_of(&n);
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
