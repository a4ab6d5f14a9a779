//! `rcon pod …`: Kubernetes-style sandboxes that containers join with `run --pod`.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use rcon::engine::pod::{self, Request};
use rcon::Context;

use super::confine::ResourceArgs;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum PodCmd {
    /// Create a pod: a cgroup, a netns under NETNS_DIR, a pause process, one network attachment.
    Create {
        /// The pod's name (default: the first 12 hex digits of its id); also its netns name.
        #[arg(long)]
        name: Option<String>,
        /// The network to attach the pod to: a network name (default: bridge),
        /// or none for a netns with only lo.
        #[arg(long = "network", visible_alias = "net")]
        network: Option<String>,
        /// A static address on the network.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// Publish a pod port on the node, as `run -p`.
        #[arg(long = "publish", short = 'p')]
        publish: Vec<String>,
        /// The pod's hostname (default: its name).
        #[arg(long)]
        hostname: Option<String>,
        /// Namespaces shared beyond net, ipc and uts: only `pid` (the pause process is its pid 1).
        #[arg(long, value_parser = ["pid"])]
        share: Vec<String>,
        /// Limits for the pod as a whole (its cgroup), as `rcon run` takes them.
        #[command(flatten)]
        limits: Box<ResourceArgs>,
    },
    /// List pods with their status, address and containers.
    Ls,
    /// Print a pod as JSON.
    Inspect { name: String },
    /// Stop a pod's containers, then its pause process (the address stays until rm).
    Stop {
        /// Seconds between TERM and KILL.
        #[arg(long, short = 't', default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove pods: containers, pause process, network, netns, cgroup.
    Rm {
        /// Also when containers are running: they are stopped and removed.
        #[arg(long, short = 'f')]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn pod(ctx: &Context, cmd: PodCmd) -> Result<i32> {
    match cmd {
        PodCmd::Create { name, network, ip, publish, hostname, share, limits } => {
            let req = Request {
                name,
                network,
                ip,
                ports: publish,
                hostname,
                share_pid: !share.is_empty(),
                limits: (*limits).into_flags(),
            };
            println!("{}", pod::create(ctx, &req)?.id);
        }
        PodCmd::Ls => {
            println!("{:<14} {:<20} {:<10} {:<18} CONTAINERS", "POD ID", "NAME", "STATUS", "IP");
            let (views, broken) = pod::list(ctx)?;
            super::warn_broken(&broken);
            for b in &broken {
                println!("{:<14} {:<20} {:<10} {:<18} {}", "-", b.name, "broken", "-", b.cause);
            }
            for v in views {
                let ip = v.endpoints.first().and_then(|e| e.cidr()).unwrap_or_else(|| "-".into());
                let members: Vec<&str> = v.containers.iter().map(|c| c.name.as_str()).collect();
                println!(
                    "{:<14} {:<20} {:<10} {:<18} {}",
                    &v.pod.id[..12],
                    v.pod.name,
                    v.status.to_string(),
                    ip,
                    if members.is_empty() { "-".to_string() } else { members.join(",") }
                );
            }
        }
        PodCmd::Inspect { name } => {
            let v = pod::view(ctx, pod::get(ctx, &name)?)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        PodCmd::Stop { time, names } => {
            for n in names {
                pod::stop(ctx, &n, Duration::from_secs(time))?;
                println!("{n}");
            }
        }
        PodCmd::Rm { force, names } => {
            for n in names {
                pod::remove(ctx, &n, force)?;
                println!("{n}");
            }
        }
    }
    Ok(0)
}
