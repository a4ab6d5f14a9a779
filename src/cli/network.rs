//! `rcon network …`, `rcon gc` and `rcon inspect`.

use std::collections::HashMap;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{ArgAction, Args, Subcommand};
use ipnet::Ipv4Net;
use rcon::net::macaddr::Mac;
use rcon::net::manage::{self, AttachRequest};
use rcon::net::network::{Driver, Request};
use rcon::net::wire;
use rcon::{engine, runtime, Context};

use super::lifecycle::Format;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum NetworkCmd {
    /// Create a network (bridge by default).
    Create(CreateArgs),
    /// List networks.
    Ls(LsArgs),
    /// Print a network and its endpoints as JSON.
    Inspect { name: String },
    /// Turn rcon's resolver on or off for a network.
    Update(UpdateArgs),
    /// Remove networks; with endpoints only with --force.
    Rm {
        #[arg(long, short = 'f')]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add an interface on NETWORK to a running container (eth1, eth2 …).
    Connect(ConnectArgs),
    /// Remove a running container's interface on NETWORK.
    Disconnect { network: String, container: String },
    /// Attach any network namespace (for OCI bundles and other runtimes); prints the endpoint as JSON.
    Attach(AttachArgs),
    /// Detach a network namespace from NETWORK.
    Detach {
        #[arg(long)]
        netns: PathBuf,
        /// Only this interface (default: every interface on NETWORK).
        #[arg(long)]
        ifname: Option<String>,
        network: String,
    },
    /// OCI hook mode: reads the state JSON on stdin; createRuntime attaches the
    /// networks in the `rcon.network` annotation, poststop detaches them.
    Hook {
        /// createRuntime or poststop (default: from the state's status).
        stage: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[arg(long, default_value = "bridge")]
    driver: Driver,
    #[arg(long)]
    subnet: Option<Ipv4Net>,
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// The bridge device's name (bridge driver; default rcon-NAME).
    #[arg(long)]
    bridge: Option<String>,
    /// Default: the MTU of the interface holding the default route.
    #[arg(long)]
    mtu: Option<u32>,
    /// No traffic in or out of the network, except to the node itself.
    #[arg(long)]
    internal: bool,
    /// Whether containers on the network may talk to each other.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    icc: bool,
    /// Whether traffic leaving the subnet is masqueraded.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    masquerade: bool,
    /// Let containers send from any MAC and address (routers in containers); by default a bridge
    /// port passes only its container's own MAC, ARP for its own address and IPv4 from it.
    #[arg(long)]
    allow_spoofing: bool,
    #[command(flatten)]
    dns: DnsArgs,
    name: String,
}

/// DNS on or off: on by default for user bridge networks, off for the default `bridge`.
#[derive(Args, Debug)]
pub struct DnsArgs {
    /// Serve container names on the gateway (rcon's resolver, docs/DNS.md).
    #[arg(long, conflicts_with = "disable_dns")]
    dns: bool,
    /// No resolver on this network: containers get the host's nameservers.
    #[arg(long)]
    disable_dns: bool,
}

impl DnsArgs {
    fn choice(&self) -> Option<bool> {
        (self.dns || self.disable_dns).then_some(self.dns)
    }
}

/// `rcon dns`: the supervisor, which keeps the resolver (its worker) running.
#[derive(Args, Debug)]
pub struct DnsDaemonArgs {
    /// Be the resolver itself (the supervisor starts it so).
    #[arg(long, hide = true)]
    pub worker: bool,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    dns: DnsArgs,
    name: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// Another name the network's resolver answers with the container's address.
    #[arg(long = "network-alias")]
    network_alias: Vec<String>,
    #[arg(long)]
    mac: Option<String>,
    network: String,
    container: String,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[arg(long)]
    netns: PathBuf,
    /// The interface name inside (default: the first free ethN).
    #[arg(long)]
    ifname: Option<String>,
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    #[arg(long)]
    mac: Option<String>,
    /// Publish a port of this namespace on the node, as `rcon run -p`.
    #[arg(long = "publish", short = 'p')]
    publish: Vec<String>,
    /// A name the network's resolver answers with this interface's address.
    #[arg(long = "network-alias")]
    network_alias: Vec<String>,
    network: String,
}

pub fn network(ctx: &Context, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => {
            let mut req = Request::new(&a.name);
            req.driver = a.driver;
            req.subnet = a.subnet;
            req.gateway = a.gateway;
            req.bridge = a.bridge;
            req.mtu = a.mtu;
            req.internal = a.internal;
            req.icc = a.icc;
            req.masquerade = a.masquerade;
            req.allow_spoofing = a.allow_spoofing;
            req.dns = a.dns.choice();
            req.firewall = ctx.firewall;
            let net = manage::create_network(ctx, &req)?;
            println!("{}", net.name);
        }
        NetworkCmd::Update(a) => {
            let Some(dns) = a.dns.choice() else { bail!("network update: give --dns or --disable-dns") };
            println!("{}", manage::update_network(ctx, &a.name, dns)?.name);
        }
        NetworkCmd::Ls(a) => {
            let all = manage::scan_networks(ctx)?;
            super::warn_broken(&all.broken);
            if a.format == Format::Json {
                // A broken network is `{"name", "broken": {kind, name, path, cause}}`.
                let broken = all.broken.iter().map(|b| serde_json::json!({"name": b.name, "broken": b}));
                let rows: Vec<serde_json::Value> =
                    all.good.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
                println!("{}", serde_json::to_string(&rows.into_iter().chain(broken).collect::<Vec<_>>())?);
                return Ok(0);
            }
            println!("{:<20} {:<8} {:<18} {:<15} {:<15} FIREWALL", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE");
            for b in &all.broken {
                println!("{:<20} {:<8} {:<18} {:<15} {:<15} {}", b.name, "broken", "-", "-", "-", b.cause);
            }
            for n in all.good {
                let gw = n.gateway.map(|g| g.to_string()).unwrap_or_else(|| "-".into());
                let br = n.bridge.clone().unwrap_or_else(|| "-".into());
                println!(
                    "{:<20} {:<8} {:<18} {gw:<15} {br:<15} {}",
                    n.name,
                    n.driver,
                    n.subnet.to_string(),
                    n.firewall
                );
            }
        }
        NetworkCmd::Inspect { name } => {
            let i = manage::inspect_network(ctx, &name)?;
            super::warn_broken(&i.broken);
            println!("{}", serde_json::to_string_pretty(&i)?);
        }
        NetworkCmd::Rm { force, names } => {
            for n in names {
                manage::remove_network(ctx, &n, force)?;
                println!("{n}");
            }
        }
        NetworkCmd::Connect(a) => {
            let (id, pid) = running(ctx, &a.container)?;
            let name = engine::names::name_of(&runtime::state(ctx, &id)?).to_string();
            let names: Vec<String> = std::iter::once(name).chain(a.network_alias).collect();
            check_names(ctx, &a.network, &names)?;
            let req = AttachRequest {
                network: a.network,
                netns: manage::netns_of_pid(pid),
                ip: a.ip,
                mac: a.mac.as_deref().map(Mac::for_interface).transpose()?,
                owner: Some(id),
                names,
                ..Default::default()
            };
            manage::attach(ctx, &req)?;
        }
        NetworkCmd::Disconnect { network, container } => {
            let id = engine::names::resolve(ctx, &container)?;
            if manage::detach_owner(ctx, &id, Some(&network))? == 0 {
                bail!("container {container:?} is not connected to network {network}");
            }
        }
        NetworkCmd::Attach(a) => {
            let req = AttachRequest {
                network: a.network,
                netns: a.netns,
                ifname: a.ifname,
                ip: a.ip,
                mac: a.mac.as_deref().map(Mac::for_interface).transpose()?,
                owner: None,
                ports: a.publish.iter().map(|p| p.parse()).collect::<Result<_>>()?,
                names: a.network_alias,
            };
            check_names(ctx, &req.network, &req.names)?;
            println!("{}", serde_json::to_string(&manage::attach(ctx, &req)?)?);
        }
        NetworkCmd::Detach { netns, ifname, network } => manage::detach(ctx, &network, &netns, ifname.as_deref())?,
        NetworkCmd::Hook { stage } => hook(ctx, stage.as_deref())?,
    }
    Ok(0)
}

/// Names for the resolver must be DNS labels on a network with DNS on.
fn check_names(ctx: &Context, network: &str, names: &[String]) -> Result<()> {
    if manage::resolver_of(ctx, network)?.is_some() {
        names.iter().try_for_each(|n| rcon::net::dns::resolv::check_label("name", n, network))?;
    }
    Ok(())
}

/// The id and init pid of a running container.
fn running(ctx: &Context, key: &str) -> Result<(String, i32)> {
    let id = engine::names::resolve(ctx, key)?;
    let st = runtime::state(ctx, &id)?;
    if !matches!(st.status, runtime::Status::Running | runtime::Status::Created) {
        bail!("container {key:?} is {}, not running", st.status);
    }
    Ok((id, st.pid))
}

#[derive(serde::Deserialize)]
struct HookState {
    id: String,
    #[serde(default)]
    pid: i32,
    status: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

fn hook(ctx: &Context, stage: Option<&str>) -> Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading the OCI state on stdin")?;
    let st: HookState = serde_json::from_str(&input).context("the OCI state on stdin")?;
    let stage = stage.unwrap_or(match st.status.as_str() {
        "stopped" => "poststop",
        _ => "createRuntime",
    });
    match stage {
        "createRuntime" | "prestart" | "createContainer" => {
            if st.pid <= 0 {
                bail!("hook {stage}: the state has no pid");
            }
            wire::on_create(ctx, &st.id, st.pid, &st.annotations)?;
        }
        "poststop" => wire::on_delete(ctx, &st.id)?,
        other => bail!("hook stage {other:?}: use createRuntime or poststop"),
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Also remove the records that cannot be read (networks, endpoints,
    /// leases, pods, services, peers); what they owned is collected by the next gc.
    #[arg(long)]
    remove_broken: bool,
}

/// `rcon gc`: remove what crashed runs left (endpoints, leases, veths, rules).
/// A record that cannot be read is left with all it may own, and gc goes on
/// with the rest, then fails with one line naming each such record.
pub fn gc(ctx: &Context, a: GcArgs) -> Result<i32> {
    let mut r = engine::GcReport::default();
    let done = engine::gc(
        ctx,
        &[rcon::net::firewall::Backend::Nftables, rcon::net::firewall::Backend::Iptables],
        a.remove_broken,
        &mut r,
    );
    print_removed(&r);
    done?;
    let broken = r.broken;
    if broken.is_empty() {
        return Ok(0);
    }
    let n = broken.len();
    let list: Vec<String> = broken.iter().map(|b| b.to_string()).collect();
    let how = if broken.iter().any(engine::gc_removable) { " (or run `rcon gc --remove-broken`)" } else { "" };
    bail!(
        "gc: {n} record{} could not be read and {} left in place with what {} may own: {}; remove {} by hand{how}",
        if n == 1 { "" } else { "s" },
        if n == 1 { "was" } else { "were" },
        if n == 1 { "it" } else { "they" },
        list.join("; "),
        if n == 1 { "it" } else { "them" },
    )
}

/// What one gc removed, a line each.
fn print_removed(r: &engine::GcReport) {
    for name in &r.pods {
        println!("removed pod {name}");
    }
    for id in &r.containers {
        println!("removed container {id}");
    }
    let n = &r.net;
    let all = [
        ("endpoint", &n.endpoints),
        ("lease", &n.leases),
        ("link", &n.links),
        ("rules", &n.rules),
        ("host port claim", &n.ports),
    ];
    for (what, items) in all {
        for i in items {
            println!("removed {what} {i}");
        }
    }
    if n.index_links > 0 {
        println!("removed {} dangling endpoint index link(s)", n.index_links);
    }
    for b in &r.broken_removed {
        println!("removed broken {} record {}", b.kind, b.path.display());
    }
}

/// `rcon inspect NAME`: the container with its interfaces.
pub fn inspect(ctx: &Context, key: &str) -> Result<i32> {
    let id = engine::names::resolve(ctx, key)?;
    let st = runtime::state(ctx, &id)?;
    let eps = engine::pod::endpoints_of_container(ctx, &st)?;
    let nets: Vec<serde_json::Value> = eps
        .iter()
        .map(|e| {
            serde_json::json!({
                "network": e.network, "interface": e.ifname, "ip": e.cidr(), "mac": e.mac,
                "gateway": e.gateway, "netns": e.netns, "host_interface": e.host_ifname,
                "ports": e.ports,
            })
        })
        .collect();
    let v = serde_json::json!({
        "id": st.id,
        "name": engine::names::name_of(&st),
        "status": st.status.to_string(),
        "oomKilled": st.oom_killed,
        "pid": st.pid,
        "bundle": st.bundle,
        "netns": format!("/proc/{}/ns/net", st.pid),
        "pod": st.annotations.get(engine::pod::POD),
        "networks": nets,
        "security_opt": engine::security_opt::describe(&st.annotations),
        "HostConfig": engine::confine::host_config_of(&st.annotations),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

/// `rcon port NAME`: the container's published ports, one a line, as
/// `docker port` prints them (`80/tcp -> 0.0.0.0:8080`).
pub fn port(ctx: &Context, key: &str) -> Result<i32> {
    let id = engine::names::resolve(ctx, key)?;
    let st = runtime::state(ctx, &id)?;
    let mut all: Vec<_> = engine::pod::endpoints_of_container(ctx, &st)?.into_iter().flat_map(|e| e.ports).collect();
    all.sort_by_key(|m| (m.ctr_port, m.proto, m.host_port));
    for m in all {
        println!("{m}");
    }
    Ok(0)
}
