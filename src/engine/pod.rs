//! Pod sandboxes, as Kubernetes runs them: a named network namespace (seen
//! by `ip netns`), a pause process that holds new ipc and uts (and, with
//! `--share pid`, pid) namespaces, and one network attachment owned by the
//! pod. Containers join by namespace path, so the pod keeps its address and
//! ports while they come and go.
//!
//! The pod has a cgroup of its own (pod/limits.rs, with `--memory`, `--cpus`
//! and the other limits of `rcon run`): the pause process lives in it, and
//! each member container's groups nest inside it.
//!
//! Crash safety is by order: the record (naming its creator and its cgroup
//! dirs) is written before the cgroup, the netns, the pause process and the
//! attachment, and removed after them; `gc` finishes the removal of a pod
//! whose creator died.

mod limits;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::pause;
use crate::net::endpoint::Endpoint;
use crate::net::manage::{self, AttachRequest};
use crate::net::{netns, ports::PortSpec};
use crate::runtime;
use crate::runtime::state::{self, Creator};
use crate::store::{self, Named, Records};
use crate::sys::spawn;
use crate::Context;

pub use limits::{install_pod_hook, Cgroup, Limits};

/// The annotation that puts a container in a pod (its name or id).
pub const POD: &str = "rcon.pod";

/// What `rcon pod create` asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub name: Option<String>,
    pub network: Option<String>,
    pub ip: Option<std::net::Ipv4Addr>,
    pub ports: Vec<String>,
    pub hostname: Option<String>,
    pub share_pid: bool,
    /// `--memory`, `--cpus` and the other limits, as `rcon run` takes them.
    pub limits: super::confine::Flags,
}

/// A pod's record (`<data-root>/pods/<name>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub created: String,
    pub hostname: String,
    /// The bind-mounted netns file (NETNS_DIR/<name>).
    pub netns: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default)]
    pub share_pid: bool,
    /// The pause process, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Creator>,
    /// The rcon making the pod; cleared when the pod is complete. A pod whose
    /// creator is gone was abandoned half-made, and gc removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
    /// Set by `pod stop`: a pause process that is gone was stopped, not lost.
    #[serde(default)]
    pub stopped: bool,
    /// The pod's cgroup and its limits (none in a record from before pods had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
}

impl Named for Pod {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Where a pod stands, worked out from its record and its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A `pod create` is under way.
    Creating,
    /// The `pod create` that made it was killed: `rcon gc` removes it.
    Abandoned,
    Running,
    /// `pod stop` ended its pause process.
    Stopped,
    /// Its pause process died.
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(v.as_str().unwrap_or_default())
    }
}

impl Pod {
    pub fn status(&self) -> Status {
        match (&self.creator, self.pause_alive(), self.stopped) {
            (Some(c), _, _) if c.alive() => Status::Creating,
            (Some(_), _, _) => Status::Abandoned,
            (None, true, _) => Status::Running,
            (None, false, true) => Status::Stopped,
            (None, false, false) => Status::Dead,
        }
    }

    fn pause_alive(&self) -> bool {
        self.pause.is_some_and(|p| p.alive())
    }

    /// The namespace files a member joins: (OCI type, path).
    pub fn namespaces(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = vec![("network", self.netns.clone())];
        if let Some(p) = self.pause {
            out.push(("ipc", proc_ns(p.pid, "ipc")));
            out.push(("uts", proc_ns(p.pid, "uts")));
            if self.share_pid {
                out.push(("pid", proc_ns(p.pid, "pid")));
            }
        }
        out
    }

    /// Whether the container with these annotations belongs to this pod.
    fn has_member(&self, ann: &std::collections::HashMap<String, String>) -> bool {
        ann.get(POD).is_some_and(|v| *v == self.id || *v == self.name)
    }
}

fn proc_ns(pid: i32, kind: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{kind}"))
}

pub fn store(ctx: &Context) -> Records<Pod> {
    Records::new(ctx.data_root.join("pods"), "pod")
}

/// A pod's name becomes a netns file name and, by default, its hostname.
fn check_name(name: &str) -> Result<()> {
    store::validate_id("pod name", name)?;
    store::check_len("pod name", name, 63, "it is the pod's default hostname")
}

/// Create a pod and print nothing; returns its record. All or nothing.
pub fn create(ctx: &Context, req: &Request) -> Result<Pod> {
    let id = super::names::new_id()?;
    let name = req.name.clone().unwrap_or_else(|| id[..12].to_string());
    check_name(&name)?;
    let hostname = req.hostname.clone().unwrap_or_else(|| name.clone());
    if hostname.is_empty() {
        bail!("--hostname: a hostname cannot be empty");
    }
    crate::runtime::spec::check_hostname("--hostname", &hostname)?;
    let ports: Vec<PortSpec> = req.ports.iter().map(|p| p.parse()).collect::<Result<_>>()?;
    // As `rcon run` and a podman pod: the default bridge unless told otherwise.
    let network = match req.network.as_deref() {
        None => Some(crate::net::network::DEFAULT_NETWORK.to_string()),
        Some("none") => None,
        Some(n) => Some(n.to_string()),
    };
    if network.is_none() && (req.ip.is_some() || !ports.is_empty()) {
        bail!("--ip and -p need a network: --network none gives the pod only lo");
    }
    if let Some(n) = &network {
        store::validate_id("network name", n).with_context(|| format!("--network {n:?}"))?;
        manage::check_network(ctx, n)?;
        if manage::resolver_of(ctx, n)?.is_some() {
            crate::net::dns::resolv::check_label("pod name", &name, n)?;
        }
    }
    let (cgroup, plan) = limits::plan(&id, &req.limits)?;
    let pods = store(ctx);
    let (mut pod, made) = {
        let _lock = pods.lock()?;
        if pods.exists(&name) {
            bail!("pod {name:?} already exists");
        }
        let netns = netns::path(&ctx.netns_dir, &name);
        if netns.symlink_metadata().is_ok() {
            bail!("pod {name:?}: a netns of that name already exists at {}", netns.display());
        }
        let pod = Pod {
            id,
            name,
            created: state::now_rfc3339(),
            hostname,
            netns,
            network,
            share_pid: req.share_pid,
            pause: None,
            creator: Some(Creator::me()),
            stopped: false,
            cgroup: Some(cgroup),
        };
        let made = pods.create(&pod)?;
        (pod, made)
    };
    store::fault("pod:recorded");
    if let Err(e) = build(ctx, &mut pod, made, &plan, req.ip, ports) {
        let _ = teardown(ctx, &pod);
        return Err(e);
    }
    Ok(pod)
}

/// The kernel side of a recorded pod: cgroup, netns, pause process, network.
fn build(
    ctx: &Context,
    pod: &mut Pod,
    made: store::Made,
    plan: &crate::runtime::pod_cgroup::Plan,
    ip: Option<std::net::Ipv4Addr>,
    ports: Vec<PortSpec>,
) -> Result<()> {
    let pods = store(ctx);
    limits::make(plan)?;
    tracing::debug!("pod: groups made");
    store::fault("pod:cgroup");
    netns::add(&ctx.netns_dir, &pod.name)?;
    tracing::debug!("pod: netns made");
    store::fault("pod:netns");
    // Recorded with the rest at the end, not now (two metadata operations, as much as the netns
    // costs): a crash before then leaves a record without it, whose teardown kills whatever is in
    // the pod's netns, this pause among them.
    pod.pause = Some(spawn_pause(&pod.netns, &pod.hostname, pod.share_pid, plan)?);
    tracing::debug!("pod: pause started");
    store::fault("pod:paused");
    if let Some(network) = &pod.network {
        manage::attach(
            ctx,
            &AttachRequest {
                network: network.clone(),
                netns: pod.netns.clone(),
                ip,
                owner: Some(pod.id.clone()),
                ports,
                // The resolver answers the pod's name with its address, which all its members share.
                names: vec![pod.name.clone()],
                ..Default::default()
            },
        )?;
    }
    store::fault("pod:attached");
    pod.creator = None;
    pods.finish(made, pod)
}

/// Start the pause process (engine/pause.rs) in the pod's netns with new ipc and uts namespaces (and
/// a new pid namespace, of which it becomes pid 1), born in the pod's `pause` groups.
fn spawn_pause(
    netns: &Path,
    hostname: &str,
    share_pid: bool,
    plan: &crate::runtime::pod_cgroup::Plan,
) -> Result<Creator> {
    let open = |p: &Path, write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(p)
            .with_context(|| format!("opening {}", p.display()))
    };
    let (v2, v1) = crate::runtime::pod_cgroup::pause_dirs(plan);
    let setup = pause::Setup {
        netns: open(netns, false)?,
        hostname: std::ffi::CString::new(hostname).context("a hostname with a NUL byte")?,
        new_pid: share_pid,
        v2: v2.map(|d| Ok::<_, anyhow::Error>((open(&d, false)?, open(&d.join("cgroup.procs"), true)?))).transpose()?,
        v1_tasks: v1.iter().map(|d| open(&d.join("tasks"), true)).collect::<Result<_>>()?,
        argv: pause::argv_area(),
    };
    pause::spawn(&setup)
}

/// Containers (engine or OCI) that carry this pod's annotation.
fn members(ctx: &Context, pod: &Pod) -> Result<Vec<runtime::State>> {
    Ok(runtime::list(ctx)?.into_iter().filter(|st| pod.has_member(&st.annotations)).collect())
}

/// Remove the kernel side and the record of a pod, in the reverse order of
/// `build`; safe to repeat and on a pod in any state.
fn teardown(ctx: &Context, pod: &Pod) -> Result<()> {
    for st in members(ctx, pod)? {
        super::remove(ctx, &st.id, true)?;
    }
    match pod.pause {
        Some(p) => {
            spawn::stop(p, Duration::from_secs(2));
        }
        // A creator killed before it recorded the pause: whatever is in the
        // pod's netns is that pause process.
        None => {
            for pid in netns::pids(&ctx.netns_dir, &pod.name).unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    tracing::debug!("pod rm: pause stopped");
    manage::detach_owner(ctx, &pod.id, None)?;
    tracing::debug!("pod rm: detached");
    if pod.netns.symlink_metadata().is_ok() {
        netns::delete(&ctx.netns_dir, &pod.name)?;
    }
    tracing::debug!("pod rm: netns deleted");
    if let Some(c) = &pod.cgroup {
        crate::runtime::pod_cgroup::remove(&c.cgroup_dirs)?;
    }
    tracing::debug!("pod rm: groups removed");
    store(ctx).remove(&pod.name)
}

/// A pod by name, or by id or a unique id prefix.
pub fn get(ctx: &Context, key: &str) -> Result<Pod> {
    let pods = store(ctx);
    if store::validate_id("pod name", key).is_ok() && pods.exists(key) {
        return pods.get(key);
    }
    let all = pods.list()?;
    let hits: Vec<&Pod> = all.iter().filter(|p| key.len() >= 3 && p.id.starts_with(key)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => pods.get(key),
        _ => bail!("{key:?} matches {} pods: use more of the id", hits.len()),
    }
}

/// `pod rm`: a pod with running containers needs `force`.
pub fn remove(ctx: &Context, key: &str, force: bool) -> Result<()> {
    let pod = get(ctx, key)?;
    if !force {
        let running = members(ctx, &pod)?.into_iter().filter(|st| st.status == runtime::Status::Running).count();
        if running > 0 {
            bail!("pod {:?} has {running} running container(s): stop the pod or use -f", pod.name);
        }
        if pod.status() == Status::Creating {
            bail!("pod {:?} is being created: use -f", pod.name);
        }
    }
    teardown(ctx, &pod)
}

/// `pod stop`: the containers, then the pause process. The netns, address
/// and ports stay until `pod rm`.
pub fn stop(ctx: &Context, key: &str, grace: Duration) -> Result<Pod> {
    let pods = store(ctx);
    let mut pod = get(ctx, key)?;
    for st in members(ctx, &pod)? {
        super::stop(ctx, &st.id, grace)?;
    }
    pod.stopped = true;
    pods.save(&pod)?;
    if let Some(p) = pod.pause {
        spawn::stop(p, grace);
    }
    Ok(pod)
}

/// What `pod ls` and `pod inspect` show.
#[derive(Debug, Serialize)]
pub struct View {
    #[serde(flatten)]
    pub pod: Pod,
    pub status: Status,
    pub namespaces: std::collections::BTreeMap<&'static str, PathBuf>,
    pub endpoints: Vec<Endpoint>,
    pub containers: Vec<Member>,
}

#[derive(Debug, Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub status: String,
}

pub fn view(ctx: &Context, pod: Pod) -> Result<View> {
    let containers = members(ctx, &pod)?
        .into_iter()
        .map(|st| Member { name: super::names::name_of(&st).to_string(), status: st.status.to_string(), id: st.id })
        .collect();
    Ok(View {
        status: pod.status(),
        namespaces: pod.namespaces().into_iter().collect(),
        endpoints: manage::endpoints_of(ctx, &pod.id)?,
        containers,
        pod,
    })
}

/// Every pod, and the pods whose record cannot be read.
pub fn list(ctx: &Context) -> Result<(Vec<View>, Vec<crate::store::Broken>)> {
    let all = store(ctx).scan()?;
    let views = all.good.into_iter().map(|p| view(ctx, p)).collect::<Result<_>>()?;
    Ok((views, all.broken))
}

/// For `run --pod`: the pod, which must be running.
pub fn joinable(ctx: &Context, key: &str) -> Result<Pod> {
    let pod = get(ctx, key).with_context(|| format!("--pod {key:?}"))?;
    match pod.status() {
        Status::Running => Ok(pod),
        s => bail!("--pod {key:?}: the pod is {s} (its pause process is not running): remove it with `rcon pod rm`"),
    }
}

/// The interfaces a container uses: its own, or its pod's (`inspect`, `port`).
pub fn endpoints_of_container(ctx: &Context, st: &runtime::State) -> Result<Vec<Endpoint>> {
    let own = manage::endpoints_of(ctx, &st.id)?;
    match st.annotations.get(POD) {
        Some(key) if own.is_empty() => match get(ctx, key) {
            Ok(pod) => manage::endpoints_of(ctx, &pod.id),
            Err(_) => Ok(own),
        },
        _ => Ok(own),
    }
}

/// Finish removing the pods whose creator died half-way; returns their names.
pub fn gc(ctx: &Context) -> Result<Vec<String>> {
    let pods = store(ctx);
    // A create killed between its record's creation and its write made nothing after it.
    let mut removed = if pods.any_dir() { pods.lock().and_then(|_lock| pods.remove_empty())? } else { Vec::new() };
    for pod in pods.list()? {
        if pod.creator.is_some_and(|c| !c.alive()) {
            teardown(ctx, &pod)?;
            removed.push(pod.name);
        }
    }
    Ok(removed)
}
