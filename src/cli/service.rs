//! `rcon service …`: ClusterIP-style virtual IPs in front of containers.

use anyhow::{bail, Result};
use clap::Subcommand;
use rcon::net::service;
use rcon::net::service_store::{self, Member};
use rcon::net::service_types::{BackendRef, BackendSpec, Lb, Target, Vip};
use rcon::{engine, Context};

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum ServiceCmd {
    /// Create a service: VIP:PORT DNATed to one of its backends.
    Create {
        name: String,
        /// IP:PORT[/tcp|udp|sctp]: an address no interface holds.
        #[arg(long)]
        vip: Vip,
        /// CONTAINER:PORT, repeatable.
        #[arg(long = "backend")]
        backends: Vec<String>,
        /// How new connections are spread over the backends.
        #[arg(long, default_value = "random")]
        lb: Lb,
    },
    /// List services.
    Ls,
    /// Print a service as JSON.
    Inspect { name: String },
    /// Remove services.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add a backend (CONTAINER:PORT).
    AddBackend { name: String, backend: String },
    /// Remove a backend (CONTAINER, or CONTAINER:PORT for one of its ports).
    RmBackend { name: String, backend: String },
}

/// `CONTAINER:PORT` (or `IP:PORT`) parsed, then resolved to the container's endpoint.
fn member(ctx: &Context, spec: &str) -> Result<Member> {
    let spec: BackendSpec = spec.parse()?;
    match &spec.target {
        Target::Address(ip) => {
            let cluster = rcon::net::overlay::load(&ctx.data_root)?.map(|c| c.cidr);
            service::member_at(ctx, cluster, *ip, spec.port)
        }
        Target::Container(c) => {
            let id = engine::names::resolve(ctx, c)?;
            service::member(ctx, &id, c, spec.port)
        }
    }
}

pub fn service(ctx: &Context, cmd: ServiceCmd) -> Result<i32> {
    match cmd {
        ServiceCmd::Create { name, vip, backends, lb } => {
            let members = backends.iter().map(|b| member(ctx, b)).collect::<Result<Vec<_>>>()?;
            service::create(ctx, &name, vip, members, lb)?;
            println!("{name}");
        }
        ServiceCmd::Ls => {
            println!("{:<20} {:<24} {:<10} BACKENDS", "NAME", "VIP", "LB");
            let all = service_store::store(&ctx.data_root).scan()?;
            super::warn_broken(&all.broken);
            for b in &all.broken {
                println!("{:<20} {:<24} {:<10} {}", b.name, "-", "broken", b.cause);
            }
            for s in all.good {
                let b: Vec<String> = s.backends.iter().map(|m| format!("{}:{}", m.ip, m.port)).collect();
                println!("{:<20} {:<24} {:<10} {}", s.name, s.vip.to_string(), s.lb.to_string(), b.join(","));
            }
        }
        ServiceCmd::Inspect { name } => {
            println!("{}", serde_json::to_string_pretty(&service_store::store(&ctx.data_root).get(&name)?)?);
        }
        ServiceCmd::Rm { names } => {
            for n in names {
                service::remove(ctx, &n)?;
            }
        }
        ServiceCmd::AddBackend { name, backend } => {
            let m = member(ctx, &backend)?;
            service::change(ctx, &name, |s| {
                if s.backends.iter().any(|b| b.endpoint == m.endpoint && b.port == m.port) {
                    bail!("{backend} is a backend of service {name:?} already");
                }
                s.backends.push(m);
                Ok(())
            })?;
        }
        ServiceCmd::RmBackend { name, backend } => {
            let BackendRef { target, port } = BackendRef::from(backend.as_str());
            // An address backend is named by its address, a container by name or id.
            let id = match &target {
                Target::Address(ip) => service_store::address_key(*ip),
                Target::Container(c) => engine::names::resolve(ctx, c)?,
            };
            service::change(ctx, &name, |s| {
                let before = s.backends.len();
                s.backends.retain(|b| !(b.endpoint == id || b.container == id) || port.is_some_and(|p| p != b.port));
                if s.backends.len() == before {
                    bail!("{backend} is not a backend of service {name:?}");
                }
                Ok(())
            })?;
        }
    }
    Ok(0)
}
