//! The etcd mode's use cases: write and read the network config, join
//! (lease a subnet, then build this node as `init` does), leave (revoke
//! the lease), and list or remove the leases of the whole cluster.

use std::collections::HashSet;
use std::hash::{BuildHasher as _, RandomState};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::etcd::{Endpoint, Etcd};
use super::flannel::{self, NetConfig, Plan};
use super::manage::{self, InitRequest};
use super::{agent, Cluster, IpipMode, Membership};
use crate::net::kernel::Kernel;
use crate::Context;

/// flannel's lease lifetime.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Tries at a free subnet when other nodes keep taking the one picked.
const ACQUIRE_TRIES: u64 = 16;

/// `rcon cluster config set`.
pub fn set_config(at: &Endpoint, cfg: &NetConfig) -> Result<()> {
    let text = serde_json::to_vec(cfg)?;
    // The same checks a joining node makes, before anything is written.
    let plan = cfg.plan("the config")?;
    crate::net::network::check_unreserved("--cidr", plan.network)?;
    Etcd::connect(at)?.put(&at.config_key(), text)
}

/// `rcon cluster config get`: the config as it is in the store.
pub fn get_config(at: &Endpoint) -> Result<NetConfig> {
    read_config(&mut Etcd::connect(at)?)
}

fn read_config(etcd: &mut Etcd) -> Result<NetConfig> {
    let key = etcd.at.config_key();
    let text = etcd
        .get(&key)?
        .with_context(|| format!("etcd has no network config at {key}: write one with `rcon cluster config set`"))?;
    NetConfig::parse(&key, &text)
}

/// `rcon cluster init --store etcd`.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub at: Endpoint,
    pub underlay: Option<String>,
    pub public_ip: Option<Ipv4Addr>,
    pub node_subnet: Option<Ipv4Net>,
    pub lease_ttl: Duration,
    pub network: String,
    pub ipip_mode: IpipMode,
    /// Where to write flannel's subnet.env.
    pub subnet_file: PathBuf,
}

/// Join the cluster in etcd: read its config, lease a subnet, build this
/// node, write subnet.env and program the peers found. On any failure the
/// lease is revoked and nothing stays.
pub fn join(ctx: &Context, req: &JoinRequest) -> Result<(Cluster, Option<String>)> {
    crate::store::validate_id("network name", &req.network).context("--network")?;
    if req.lease_ttl < Duration::from_secs(2) {
        bail!("--lease-ttl {}s is too short: at least 2s", req.lease_ttl.as_secs());
    }
    let k = Kernel::real();
    let node = k.links()?;
    let ul = manage::underlay(node, req.underlay.as_deref(), req.public_ip)?;
    let _lock = manage::lock(ctx)?;
    manage::refuse_member(ctx)?;
    let mut etcd = Etcd::connect(&req.at)?;
    let cfg_key = req.at.config_key();
    let plan = read_config(&mut etcd)?.plan(&cfg_key)?;
    if let Some(s) = req.node_subnet {
        if !plan.allows(s) {
            bail!(
                "--node-subnet {s} is not a /{} of {} between {} and {} ({cfg_key})",
                plan.subnet_len,
                plan.network,
                plan.min,
                plan.max
            );
        }
    }
    let value = serde_json::to_vec(&flannel::own_attrs(ul.ip, plan.backend, plan.vni, super::vtep_mac_for(ul.ip)))?;
    let lease = etcd.grant(req.lease_ttl)?;
    let subnet = match acquire(&mut etcd, &plan, ul.ip, req.node_subnet, &value, lease) {
        Ok(s) => s,
        Err(e) => {
            let _ = etcd.revoke(lease);
            return Err(e);
        }
    };
    let ireq = InitRequest {
        cidr: plan.network,
        node_subnet: subnet,
        backend: plan.backend,
        vni: plan.vni,
        port: plan.port,
        underlay: Some(ul.name.clone()),
        network: req.network.clone(),
        ipip_mode: req.ipip_mode,
    };
    let res = manage::check_settings(ireq.cidr, ireq.node_subnet, ireq.vni, ireq.port, &ireq.network).and_then(|()| {
        let mut c = manage::new_cluster(&ireq, ul);
        c.store = Some(Membership {
            at: req.at.clone(),
            lease,
            lease_ttl_secs: req.lease_ttl.as_secs(),
            subnet_file: req.subnet_file.clone(),
        });
        manage::build(ctx, &k, c)
    });
    let (c, note) = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = etcd.revoke(lease);
            return Err(e);
        }
    };
    let finish = (|| {
        write_subnet_env(&c, &req.subnet_file)?;
        agent::sync(ctx, node, &c, &mut etcd).map(drop)
    })();
    if let Err(e) = finish {
        let _ = manage::undo(ctx, &k, &c, true);
        return Err(e);
    }
    Ok((c, note))
}

/// Lease a subnet for this node with `value` attached to `lease`: the one
/// asked for; else the one a lease with this node's address holds (a node
/// that restarts gets its subnet back while that lease lives); else a free
/// one. Each is taken in a transaction that fails when another node got
/// there first, and then the next choice is tried.
fn acquire(
    etcd: &mut Etcd,
    plan: &Plan,
    me: Ipv4Addr,
    asked: Option<Ipv4Net>,
    value: &[u8],
    lease: i64,
) -> Result<Ipv4Net> {
    let seed = RandomState::new().hash_one((me, std::process::id()));
    for attempt in 0..ACQUIRE_TRIES {
        let (_, entries) = etcd.list()?;
        let mine = entries.iter().find(|e| {
            serde_json::from_slice::<flannel::LeaseAttrs>(&e.value).is_ok_and(|a| a.public_ip == me)
                && flannel::parse_key_name(&e.name).is_some_and(|s| plan.allows(s) && asked.is_none_or(|a| a == s))
        });
        if let Some(e) = mine {
            let s = flannel::parse_key_name(&e.name).expect("checked above");
            if etcd.replace(&e.name, value.to_vec(), lease, e.mod_revision)? {
                // The old etcd lease holds no key now: let it go at once.
                if e.lease != 0 {
                    let _ = etcd.revoke(e.lease);
                }
                return Ok(s);
            }
            continue;
        }
        let taken: HashSet<Ipv4Net> = entries.iter().filter_map(|e| flannel::parse_key_name(&e.name)).collect();
        let s = match asked {
            Some(s) if taken.contains(&s) => {
                let holder = entries.iter().find(|e| flannel::parse_key_name(&e.name) == Some(s));
                let who = holder
                    .and_then(|h| serde_json::from_slice::<flannel::LeaseAttrs>(&h.value).ok())
                    .map_or("another node".to_string(), |a| format!("the node at {}", a.public_ip));
                bail!("--node-subnet {s} is leased by {who} already");
            }
            Some(s) => s,
            None => plan.pick_free(&taken, seed.wrapping_add(attempt)).with_context(|| {
                format!(
                    "no free subnet in {}: all {} /{}s from {} to {} are leased",
                    plan.network,
                    plan.subnets().count(),
                    plan.subnet_len,
                    plan.min,
                    plan.max
                )
            })?,
        };
        if etcd.create(&flannel::key_name(s), value.to_vec(), lease)? {
            return Ok(s);
        }
    }
    bail!("could not lease a subnet in {ACQUIRE_TRIES} tries: other nodes kept taking the free ones")
}

/// Write flannel's subnet.env for this node.
fn write_subnet_env(c: &Cluster, path: &std::path::Path) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    crate::store::write_atomic(path, flannel::subnet_env(c.cidr, c.node_subnet, c.mtu).as_bytes())
}

/// Leave the store (reset): revoke this node's lease, which deletes its
/// key, so that every agent drops this node, and delete the key of its
/// names (the resolver revokes that key's own lease when it stops; this
/// also covers a resolver that was killed). An unreachable etcd is only a
/// warning: the leases then expire by themselves.
pub fn leave(m: &Membership, lease_name: &str) {
    let res = Etcd::connect(&m.at).and_then(|mut e| {
        e.delete_key(&m.at.dns_key(lease_name))?;
        e.revoke(m.lease)
    });
    if let Err(e) = res {
        eprintln!(
            "rcon: warning: this node's lease stays in etcd until it expires (in at most {}s): {e:#}",
            m.lease_ttl_secs
        );
    }
    let _ = std::fs::remove_file(&m.subnet_file);
}

/// One row of `rcon node ls` in the etcd mode.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    pub attrs: Result<flannel::LeaseAttrs, String>,
    /// Seconds left (None: no etcd lease attached, or gone).
    pub ttl: Option<i64>,
}

/// Every lease in the store, with the time each has left.
pub fn leases(at: &Endpoint) -> Result<Vec<LeaseRow>> {
    let mut etcd = Etcd::connect(at)?;
    let (_, entries) = etcd.list()?;
    let mut rows = Vec::new();
    for e in entries {
        let ttl = if e.lease != 0 { etcd.time_left(e.lease)? } else { None };
        rows.push(LeaseRow {
            subnet: flannel::parse_key_name(&e.name),
            attrs: serde_json::from_slice(&e.value).map_err(|err| format!("not a lease: {err}")),
            name: e.name,
            ttl,
        });
    }
    Ok(rows)
}

/// `rcon node rm NAME|SUBNET|PUBLICIP` in the etcd mode: delete the lease
/// key, which every agent then unprograms. Returns the key name.
pub fn remove_lease(at: &Endpoint, what: &str) -> Result<String> {
    let mut etcd = Etcd::connect(at)?;
    let (_, entries) = etcd.list()?;
    let subnet: Option<Ipv4Net> = what.parse().ok();
    let ip: Option<Ipv4Addr> = what.parse().ok();
    let hit = entries.iter().find(|e| {
        e.name == what
            || subnet.is_some() && flannel::parse_key_name(&e.name) == subnet
            || ip.is_some()
                && serde_json::from_slice::<flannel::LeaseAttrs>(&e.value).is_ok_and(|a| Some(a.public_ip) == ip)
    });
    let Some(e) = hit else {
        bail!("no lease {what:?} in {}: `rcon node ls` lists them", at.subnets_prefix());
    };
    etcd.delete(&e.name)?;
    Ok(e.name.clone())
}
