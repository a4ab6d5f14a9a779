//! rcon as a CNI 1.1 plugin (`rcon-cni`, installed as /opt/cni/bin/rcon;
//! docs/CNI.md). The rscni-plugin crate reads CNI_* and stdin, negotiates
//! the version and writes results and error results; this module maps each
//! command onto net's use cases: an attachment is an rcon endpoint whose
//! owner is `cni:<container id>`, on the rcon network the configuration names.

pub mod conf;
pub mod delegate;
pub mod result;

use std::collections::HashSet;
use std::path::Path;

use rscni_plugin::cni::{Cni, Plugin};
use rscni_plugin::error::Error;
use rscni_plugin::types::{Args, CNIResult};
use rscni_plugin::version::SpecVersion;

use crate::context::FirewallBackend;
use crate::error::Kind;
use crate::net::manage::{self, AttachRequest};
use crate::net::network::Network;
use crate::net::{attachment, firewall};
use crate::Context;
use conf::Settings;

/// Plugin-specific error codes (the spec leaves 100 and up to plugins).
pub const ATTACHMENT_EXISTS: u32 = 100;
pub const ATTACHMENT_BROKEN: u32 = 101;
/// What the reference plugins report for any other failure.
pub const INTERNAL: u32 = 999;

/// Run the command the environment names; the process's exit code.
pub fn main() -> i32 {
    let v = SpecVersion::new;
    let plugin = Plugin::new(v(1, 1, 0), vec![v(0, 4, 0), v(1, 0, 0), v(1, 1, 0)])
        .msg("rcon CNI plugin: rcon's bridge, routed and cluster networks");
    match plugin.run(&RconCni) {
        Ok(()) => 0,
        Err(e) => {
            // The error result is on stdout for the runtime; this line is for people.
            eprintln!("rcon-cni: {}: {}", e.msg(), e.details());
            1
        }
    }
}

pub struct RconCni;

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// A failure of rcon's own code, with the CNI code its kind implies.
fn failed(e: anyhow::Error) -> Error {
    let line = format!("{e:#}");
    match crate::error::kind(&e) {
        Some(Kind::Invalid) => Error::InvalidNetworkConfig(line),
        Some(Kind::Busy) => Error::TryAgainLater(line),
        _ => Error::Custom(INTERNAL, line, String::new()),
    }
}

fn context(s: &Settings) -> Result<Context, Error> {
    let firewall = match s.firewall {
        Some(b) => b,
        None => crate::context::configured_firewall(&s.data_root).map_err(failed)?,
    };
    Ok(Context {
        root: s.root.clone(),
        netns_dir: env("RCON_NETNS_DIR").unwrap_or_else(|| "/var/run/netns".into()).into(),
        data_root: s.data_root.clone(),
        firewall,
    })
}

/// The container id and interface name of ADD, DEL and CHECK (the crate has checked they are set).
fn names(args: &Args) -> Result<(String, String), Error> {
    let cid = args.container_id().ok_or_else(|| Error::missing_env(&["CNI_CONTAINERID"]))?;
    let ifname = args.ifname().ok_or_else(|| Error::missing_env(&["CNI_IFNAME"]))?;
    Ok((cid.to_string(), ifname.to_string()))
}

/// The network the settings name: as recorded, checked against the keys
/// that were set; made on first use unless it is the cluster's.
fn network(ctx: &Context, s: &Settings) -> Result<Network, Error> {
    let net = match manage::get_network(ctx, &s.network) {
        Ok(n) => n,
        Err(e) if crate::error::is_not_found(&e) => {
            let Some(req) = &s.create else {
                return Err(Error::InvalidNetworkConfig(format!(
                    "network {:?} does not exist: make it with `rcon cluster init` first",
                    s.network
                )));
            };
            match manage::create_network(ctx, req) {
                Ok(n) => return Ok(n),
                // Another ADD made it meanwhile.
                Err(_) if manage::get_network(ctx, &s.network).is_ok() => manage::get_network(ctx, &s.network),
                Err(e) => Err(e),
            }
            .map_err(failed)?
        }
        Err(e) => return Err(failed(e)),
    };
    let differs = |what: &str, want: String, have: String| {
        Error::InvalidNetworkConfig(format!(
            "field {what}: {want}, but rcon network {:?} has {have} (remove it or drop the key)",
            net.name
        ))
    };
    if let Some(d) = s.driver.filter(|d| *d != net.driver) {
        return Err(differs("driver", d.to_string(), net.driver.to_string()));
    }
    if let Some(sub) = s.subnet.filter(|sub| *sub != net.subnet) {
        return Err(differs("subnet", sub.to_string(), net.subnet.to_string()));
    }
    Ok(net)
}

impl Cni for RconCni {
    fn add(&self, args: Args) -> Result<CNIResult, Error> {
        let conf = args.config();
        let s = conf::settings(conf, env)?;
        let ctx = context(&s)?;
        let (cid, ifname) = names(&args)?;
        let netns = args.netns().ok_or_else(|| Error::missing_env(&["CNI_NETNS"]))?;
        let owner = conf::owner(&cid);
        if !attachment::find(&ctx, &owner, &s.network, &ifname).map_err(failed)?.is_empty() {
            return Err(Error::Custom(
                ATTACHMENT_EXISTS,
                "attachment exists".into(),
                format!("container {cid} already has {ifname} on network {}: DEL it first", s.network),
            ));
        }
        crate::sys::ns::check_ns_file(netns, oci_spec::runtime::LinuxNamespaceType::Network)
            .map_err(|e| Error::InvalidNetNS(format!("CNI_NETNS {}: {e:#}", netns.display())))?;
        let net = network(&ctx, &s)?;
        let ip = match &s.ipam {
            Some(t) => Some(delegate::address(&delegate::run(t, "ADD", conf, args.path())?)?),
            None => None,
        };
        let req = AttachRequest {
            network: net.name.clone(),
            netns: netns.clone(),
            ifname: Some(ifname),
            ip,
            mac: None,
            owner: Some(owner),
            ports: s.ports.clone(),
            names: Vec::new(),
        };
        let ep = match manage::attach(&ctx, &req) {
            Ok(ep) => ep,
            Err(e) => {
                if let Some(t) = &s.ipam {
                    let _ = delegate::run(t, "DEL", conf, args.path());
                }
                return Err(failed(e));
            }
        };
        let sandbox = netns.display().to_string();
        Ok(result::build(conf.prev_result.clone(), &net, &ep, &sandbox, conf.dns.clone()))
    }

    fn del(&self, args: Args) -> Result<(), Error> {
        let conf = args.config();
        let s = conf::settings(conf, env)?;
        let ctx = context(&s)?;
        let (cid, ifname) = names(&args)?;
        attachment::detach(&ctx, &conf::owner(&cid), &s.network, &ifname).map_err(failed)?;
        if let Some(t) = &s.ipam {
            delegate::run(t, "DEL", conf, args.path())?;
        }
        Ok(())
    }

    fn check(&self, args: Args) -> Result<(), Error> {
        let conf = args.config();
        let s = conf::settings(conf, env)?;
        let ctx = context(&s)?;
        let (cid, ifname) = names(&args)?;
        let broken = |details: String| Error::Custom(ATTACHMENT_BROKEN, "attachment broken".into(), details);
        let eps = attachment::find(&ctx, &conf::owner(&cid), &s.network, &ifname).map_err(failed)?;
        let Some(ep) = eps.first() else {
            return Err(broken(format!("container {cid} has no {ifname} on network {}", s.network)));
        };
        let netns = args.netns().ok_or_else(|| Error::missing_env(&["CNI_NETNS"]))?;
        attachment::verify(ep, netns).map_err(|e| broken(format!("{e:#}")))?;
        if let (Some(prev), Some(ip)) = (&conf.prev_result, ep.ip) {
            if !prev.ips.iter().any(|c| c.address.addr() == std::net::IpAddr::V4(ip)) {
                return Err(broken(format!("prevResult does not hold {ip}, the address of {ifname}")));
            }
        }
        if let Some(t) = &s.ipam {
            delegate::run(t, "CHECK", conf, args.path())?;
        }
        Ok(())
    }

    fn status(&self, args: Args) -> Result<(), Error> {
        let conf = args.config();
        let s = conf::settings(conf, env)?;
        let ctx = context(&s)?;
        let unavailable = |why: String| Error::PluginNotAvailable(why);
        std::fs::create_dir_all(&ctx.data_root)
            .map_err(|e| unavailable(format!("data root {}: {e}", ctx.data_root.display())))?;
        let tool = match ctx.firewall {
            FirewallBackend::Nftables => "nft",
            FirewallBackend::Iptables => "iptables-restore",
        };
        // nftables is driven in-process through libnftables when it is there.
        let in_process = ctx.firewall == FirewallBackend::Nftables && firewall::nft::in_process();
        if !in_process && !on_path(tool) {
            return Err(unavailable(format!("the {} firewall needs {tool}, which is not on PATH", ctx.firewall)));
        }
        if let Some(t) = &s.ipam {
            match delegate::run(t, "STATUS", conf, args.path()) {
                Err(e) if !delegate::unknown_command(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn gc(&self, args: Args) -> Result<(), Error> {
        let conf = args.config();
        let s = conf::settings(conf, env)?;
        let ctx = context(&s)?;
        let valid: HashSet<(&str, &str)> =
            conf.valid_attachments.iter().flatten().map(|a| (a.container_id.as_str(), a.ifname.as_str())).collect();
        attachment::retain(&ctx, &s.network, conf::OWNER_PREFIX, |cid, ifname| valid.contains(&(cid, ifname)))
            .map_err(failed)?;
        // What an ADD killed half-way left without a record: leases, veths, rules.
        manage::gc(&ctx, &[firewall::Backend::Nftables, firewall::Backend::Iptables]).map_err(failed)?;
        if let Some(t) = &s.ipam {
            match delegate::run(t, "GC", conf, args.path()) {
                Err(e) if !delegate::unknown_command(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn on_path(tool: &str) -> bool {
    let path = env("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| Path::new(&d).join(tool).is_file())
}
