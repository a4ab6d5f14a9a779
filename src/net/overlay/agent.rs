//! `rcon cluster agent`: the node agent of the etcd mode. It keeps this
//! node's lease alive, lists the leases, programs the difference, and then
//! watches from the listed revision, applying each batch of changes as it
//! comes. When the watch breaks (etcd gone, history compacted) it retries
//! with backoff and lists again; nothing is torn down meanwhile, so pods
//! keep talking. Its logic is `reconcile`; this is the loop around it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::etcd::{Endpoint, Etcd, Watched};
use super::reconcile::{diff, own_lease_lost, Me, Step, Want};
use super::{backend, flannel, manage, Cluster, LeasePeers, Node};
use crate::net::link::Netlink;
use crate::net::links::Links;
use crate::Context;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

fn me(c: &Cluster) -> Me {
    Me { own: c.lease_name(), public_ip: c.underlay_ip, backend: c.backend }
}

/// Program `steps` (the caller holds the cluster lock) and record what is
/// programmed. Removals and changes go one by one, in order (a subnet
/// handed from one node to another is freed first); the additions then go
/// to the kernel together. A step that fails is logged and left out of
/// `have`, so the next listing tries it again.
fn apply(
    ctx: &Context,
    node: &dyn Links,
    c: &Cluster,
    have: &mut BTreeMap<String, Node>,
    steps: Vec<Step>,
) -> Result<Vec<String>> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines = Vec::new();
    let say = |lines: &mut Vec<String>, step: &Step, res: Result<()>| {
        lines.push(match res {
            Ok(()) => step.line(),
            Err(e) => format!("failed: {}: {e:#}", step.line()),
        })
    };
    let (adds, others): (Vec<Step>, Vec<Step>) = steps.into_iter().partition(|s| matches!(s, Step::Add(_)));
    for step in others {
        let res = match &step {
            Step::Change { old, new } => {
                have.remove(&old.name);
                backend::unprogram(node, c, old).and_then(|()| backend::program(node, c, new)).map(|()| {
                    have.insert(new.name.clone(), new.clone());
                })
            }
            Step::Remove(n) => backend::unprogram(node, c, n).map(|()| {
                have.remove(&n.name);
            }),
            Step::Add(_) => unreachable!("partitioned out"),
        };
        say(&mut lines, &step, res);
    }
    let peers: Vec<Node> =
        adds.iter().filter_map(|s| if let Step::Add(n) = s { Some(n.clone()) } else { None }).collect();
    for ((step, res), n) in adds.iter().zip(backend::program_all(node, c, &peers)).zip(peers) {
        if res.is_ok() {
            have.insert(n.name.clone(), n);
        }
        say(&mut lines, step, res);
    }
    LeasePeers::new(&ctx.data_root).save(have)?;
    let all: Vec<Node> = have.values().cloned().collect();
    backend::sync_plane(node, c, &all, &ctx.data_root)?;
    Ok(lines)
}

/// List the leases and program the difference (the caller holds the
/// cluster lock). Returns the store's revision, what is wanted, and a line
/// per change or skipped lease.
pub fn sync(ctx: &Context, node: &dyn Links, c: &Cluster, etcd: &mut Etcd) -> Result<(i64, Want, Vec<String>)> {
    let (rev, entries) = etcd.list()?;
    let (want, mut lines) = Want::from_list(&me(c), entries.iter().map(|e| (e.name.as_str(), e.value.as_slice())));
    let mut have = LeasePeers::new(&ctx.data_root).load()?;
    let steps = diff(&have, &want.peers);
    lines.extend(apply(ctx, node, c, &mut have, steps)?);
    Ok((rev, want, lines))
}

/// Store settings given to the agent that override what init recorded.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub cafile: Option<std::path::PathBuf>,
    pub certfile: Option<std::path::PathBuf>,
    pub keyfile: Option<std::path::PathBuf>,
}

impl Overrides {
    fn over(&self, mut at: Endpoint) -> Endpoint {
        if let Some(e) = &self.endpoints {
            at.endpoints = e.clone();
        }
        if let Some(p) = &self.prefix {
            at.prefix = p.trim_end_matches('/').to_string();
        }
        at.cafile = self.cafile.clone().or(at.cafile);
        at.certfile = self.certfile.clone().or(at.certfile);
        at.keyfile = self.keyfile.clone().or(at.keyfile);
        at
    }
}

/// Why a session with etcd ended.
enum End {
    /// This node left the cluster (reset): the agent stops.
    Left,
    /// Something the agent cannot mend by retrying.
    Fatal(anyhow::Error),
}

/// Run the agent until this node leaves the cluster. Every line goes to
/// stdout (systemd's journal takes it from there).
pub fn run(ctx: &Context, over: &Overrides) -> Result<()> {
    let c = super::require(&ctx.data_root)?;
    if c.store.is_none() {
        bail!("this node's peers are declared by hand (`cluster init` without --store etcd): the agent has nothing to watch");
    }
    // One agent per node: two would each keep their own view of what is programmed.
    let Some(_only) = crate::store::try_lock(&super::dir(&ctx.data_root).join("agent.lock"))? else {
        bail!(
            "an agent runs on this node already (it holds {})",
            super::dir(&ctx.data_root).join("agent.lock").display()
        );
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        match session(ctx, over, &mut backoff) {
            Ok(End::Left) => {
                say("this node left the cluster: stopping");
                return Ok(());
            }
            Ok(End::Fatal(e)) => return Err(e),
            Err(e) => {
                say(&format!("{e:#}; retrying in {} ms", backoff.as_millis()));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn say(line: &str) {
    println!("{line}");
}

/// This node's cluster in the etcd mode, read under the lock; None when it left.
fn current(ctx: &Context, lease_name: Option<&str>) -> Result<Option<Cluster>> {
    Ok(super::load(&ctx.data_root)?.filter(|c| c.store.is_some() && lease_name.is_none_or(|n| c.lease_name() == n)))
}

/// Connect, list, program, then watch until the watch breaks (Err: retry).
fn session(ctx: &Context, over: &Overrides, backoff: &mut Duration) -> Result<End> {
    let Some(c) = current(ctx, None)? else { return Ok(End::Left) };
    let m = c.store.clone().expect("etcd mode");
    let mut etcd = Etcd::connect(&over.over(m.at.clone()))?;
    let node = Netlink::current()?;
    if let Err(end) = keep_lease(ctx, &mut etcd, &c)? {
        return Ok(end);
    }
    let (rev, mut want, mut have) = {
        let _l = manage::lock(ctx)?;
        let Some(c) = current(ctx, Some(&c.lease_name()))? else { return Ok(End::Left) };
        let (rev, want, lines) = sync(ctx, &node, &c, &mut etcd)?;
        lines.iter().for_each(|l| say(l));
        // Only this agent changes the record from now on (init holds the
        // lock and refuses a member; reset ends the session): keep it here.
        (rev, want, LeasePeers::new(&ctx.data_root).load()?)
    };
    let mut watch = etcd.watch(rev + 1)?;
    say(&format!("watching {} from revision {}", etcd.at.subnets_prefix(), rev + 1));
    *backoff = BACKOFF_MIN;
    let renew_every = Duration::from_secs((m.lease_ttl_secs / 3).max(1));
    let mut renew_at = Instant::now() + renew_every;
    let me = me(&c);
    let created = c.created.clone();
    loop {
        match etcd.next(&mut watch, renew_at)? {
            Watched::Timeout => {
                if let Err(end) = keep_lease(ctx, &mut etcd, &c)? {
                    return Ok(end);
                }
                renew_at = Instant::now() + renew_every;
            }
            Watched::Changes(changes) => {
                if own_lease_lost(&me, &changes) {
                    if let Err(end) = keep_lease(ctx, &mut etcd, &c)? {
                        return Ok(end);
                    }
                }
                let mut lines = want.apply(&me, &changes);
                let _l = manage::lock(ctx)?;
                let Some(c) = current(ctx, Some(&me.own))? else { return Ok(End::Left) };
                if c.created != created {
                    // Reset and joined again under the same subnet: what this
                    // session holds is another membership's.
                    bail!("this node joined the cluster again: listing anew");
                }
                let steps = diff(&have, &want.peers);
                lines.extend(apply(ctx, &node, &c, &mut have, steps)?);
                lines.iter().for_each(|l| say(l));
            }
        }
    }
}

/// Renew this node's lease; when it is gone (expired, revoked, its key
/// deleted), lease the same subnet again and record the new lease. Err(End)
/// when the node cannot go on: it left, or another node holds its subnet.
fn keep_lease(ctx: &Context, etcd: &mut Etcd, c: &Cluster) -> Result<Result<(), End>> {
    let Some(c) = current(ctx, Some(&c.lease_name()))? else { return Ok(Err(End::Left)) };
    let m = c.store.clone().expect("etcd mode");
    let name = c.lease_name();
    let value = serde_json::to_vec(&flannel::own_attrs(c.underlay_ip, c.backend, c.vni, c.vtep_mac))?;
    let (_, entries) = etcd.list()?;
    let held = entries.iter().find(|e| e.name == name);
    if let Some(e) = held {
        if e.lease == m.lease && e.value == value && etcd.renew(m.lease)? {
            return Ok(Ok(()));
        }
        let theirs =
            serde_json::from_slice::<flannel::LeaseAttrs>(&e.value).map_or(true, |a| a.public_ip != c.underlay_ip);
        if theirs {
            return Ok(Err(End::Fatal(anyhow::anyhow!(
                "this node's subnet {} is leased by another node now: run `rcon cluster reset` and `rcon cluster init` again",
                c.node_subnet
            ))));
        }
    }
    // Lease again under the lock: a `cluster reset` holds it from revoking
    // the lease to removing the record, so the subnet is never leased anew
    // for a node that is leaving (its peers would program it again).
    let _l = manage::lock(ctx)?;
    let Some(mut c) = current(ctx, Some(&name))? else { return Ok(Err(End::Left)) };
    let lease = etcd.grant(Duration::from_secs(m.lease_ttl_secs))?;
    let taken = match held {
        Some(e) => etcd.replace(&name, value, lease, e.mod_revision)?,
        None => etcd.create(&name, value, lease)?,
    };
    if !taken {
        let _ = etcd.revoke(lease);
        bail!("leasing {name} again: it changed meanwhile");
    }
    let old = c.store.as_ref().map_or(0, |m| m.lease);
    c.store.as_mut().expect("etcd mode").lease = lease;
    super::save(&ctx.data_root, &c)?;
    if old != lease {
        let _ = etcd.revoke(old);
    }
    say(&format!("lease of {name} was lost: acquired it again"));
    Ok(Ok(()))
}
