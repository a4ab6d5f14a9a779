//! The docker-style front of rcon: `run IMAGE`, names, logs, stop, rm, ps.
//! It turns an image into an OCI bundle and hands it to the same runtime
//! path as `create/start`; the runtime knows nothing of images.

pub mod confine;
mod gc;
mod manage;
mod monitor;
mod network_hook;
pub use network_hook::install_network_hook;
pub use pod::install_pod_hook;
pub mod names;
pub mod pause;
pub mod pod;
mod rootfs;
mod seccomp_file;
pub mod seccomp_profile;
pub mod security_opt;
pub mod spec;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::image::{self, Store};
use crate::net::dns::resolv;
use crate::runtime::{self, CreateOptions, Status};
use crate::Context;
pub use gc::{gc, removable as gc_removable, Report as GcReport};
use manage::discard;
pub use manage::{forget, list, logs, remove, stop, Row};
pub use spec::{CgroupNs, Net, Overrides};

/// `rcon run [options] IMAGE [CMD...]`.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub image: String,
    pub o: Overrides,
    pub name: Option<String>,
    pub net: Option<String>,
    /// `--ip`, `--mac` on the network.
    pub ip: Option<std::net::Ipv4Addr>,
    pub mac: Option<crate::net::macaddr::Mac>,
    /// `-p` specs, as written.
    pub ports: Vec<String>,
    /// `-P`: publish every port the image exposes.
    pub publish_all: bool,
    pub detach: bool,
    pub rm: bool,
    /// `-i`: the container reads rcon's stdin; without it (and without -t),
    /// its stdin is /dev/null, as with docker.
    pub interactive: bool,
    /// `--pod`: join this pod's namespaces instead of getting a network.
    pub pod: Option<String>,
    /// `--network-alias`: more names for the resolver to answer with the container's address.
    pub aliases: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`: the container's resolv.conf.
    pub dns: crate::net::dns::resolv::Flags,
    /// `--add-host NAME:IP`: lines for its /etc/hosts.
    pub add_hosts: Vec<String>,
}

/// Names the engine keeps under the state root (ids start with a letter or
/// digit, so these can never collide with a container).
fn names_dir(ctx: &Context) -> PathBuf {
    ctx.root.join(".names")
}

pub fn log_path(ctx: &Context, id: &str) -> PathBuf {
    ctx.root.join(".logs").join(format!("{id}.log"))
}

fn exit_path(ctx: &Context, id: &str) -> PathBuf {
    rootfs::container_dir(ctx, id).join("exit-status")
}

fn creator_path(ctx: &Context, id: &str) -> PathBuf {
    rootfs::container_dir(ctx, id).join(rootfs::CREATOR)
}

/// The recorded exit status of a stopped engine container.
pub fn exit_status(ctx: &Context, id: &str) -> Option<i32> {
    fs::read_to_string(exit_path(ctx, id)).ok()?.trim().parse().ok()
}

/// Resolve an image, pulling it when it names a registry and is not here.
fn find_image(store: &Store, name: &str) -> Result<image::Image> {
    match store.get(name) {
        Ok(img) => Ok(img),
        Err(e) if names_registry(name) => store.pull(name, false).with_context(|| format!("{e:#}; pulling it")),
        Err(e) => Err(e),
    }
}

/// `host[:port]/path` with a dot, a port or `localhost` in the first part.
fn names_registry(name: &str) -> bool {
    name.split_once('/').is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

/// The namespace a `--net/--network` value gives the container, and the
/// rcon network to attach it to (the default `bridge` when none is named).
pub fn parse_network(ctx: &Context, s: Option<&str>) -> Result<(Net, Option<String>)> {
    match s {
        None => Ok((Net::None, Some(crate::net::network::DEFAULT_NETWORK.to_string()))),
        Some(n) if n.contains(':') || matches!(n, "none" | "host" | "") => Ok((parse_net(ctx, s)?, None)),
        Some(n) => {
            crate::store::validate_id("network name", n).with_context(|| format!("--network {n:?}"))?;
            Ok((Net::None, Some(n.to_string())))
        }
    }
}

pub fn parse_net(ctx: &Context, s: Option<&str>) -> Result<Net> {
    Ok(match s {
        None | Some("none") | Some("") => Net::None,
        Some("host") => Net::Host,
        Some(n) if n.starts_with("ns:") => Net::Path(PathBuf::from(&n[3..])),
        Some(n) if n.starts_with("container:") => {
            let id = names::resolve(ctx, &n[10..])?;
            let st = runtime::state(ctx, &id)?;
            if st.status != Status::Running {
                bail!("--net {n}: container is {}, not running", st.status);
            }
            Net::Path(PathBuf::from(format!("/proc/{}/ns/net", st.pid)))
        }
        Some(n) => bail!("--net {n:?}: use none, host, ns:PATH, container:NAME or a network name"),
    })
}

/// Reserve `name` for `id`, taking over a name whose container is gone.
/// The reservation is written whole under a temporary name and then
/// linked, so a name never exists without its owner (link refuses a taken
/// name, as O_EXCL would); a kill leaves at most a `.tmp-ID` file.
fn reserve_name(ctx: &Context, name: &str, id: &str) -> Result<()> {
    crate::store::validate_id("container name", name)?;
    let dir = names_dir(ctx);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("{NAME_TMP}{id}"));
    fs::write(&tmp, id.as_bytes()).context("reserving the container name")?;
    let res = link_name(ctx, &tmp, &dir.join(name), name);
    let _ = fs::remove_file(&tmp);
    res
}

/// The container id `name` is reserved for, if a run reserved it.
fn reserved_id(ctx: &Context, name: &str) -> Option<String> {
    crate::store::validate_id("container name", name).ok()?;
    let owner = fs::read_to_string(names_dir(ctx).join(name)).ok()?;
    let owner = owner.trim();
    crate::store::validate_id("container", owner).ok()?;
    Some(owner.to_string())
}

/// The prefix of a name reservation being written (`.tmp-ID`).
const NAME_TMP: &str = ".tmp-";

fn link_name(ctx: &Context, tmp: &Path, path: &Path, name: &str) -> Result<()> {
    for _ in 0..2 {
        match fs::hard_link(tmp, path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(path).unwrap_or_default();
                let owner = owner.trim();
                if !gc::owner_gone(ctx, owner) {
                    bail!("container name {name:?} is already in use by {}", &owner[..owner.len().min(12)]);
                }
                let _ = fs::remove_file(path);
            }
            Err(e) => return Err(e).context("reserving the container name"),
        }
    }
    bail!("container name {name:?} is already in use")
}

/// Undo a run that failed before the runtime took over.
struct Undo<'a> {
    ctx: &'a Context,
    id: String,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = forget(self.ctx, &self.id);
        }
    }
}

/// Run an image: prints nothing itself; returns the id (for -d) and the
/// exit status (foreground).
pub fn run(ctx: &Context, req: &RunRequest) -> Result<(String, i32)> {
    let store = Store::open(&ctx.data_root)?;
    // Names and flags first: nothing is pulled or made for a run refused later.
    if let Some(n) = &req.name {
        crate::store::validate_id("container name", n)?;
    }
    if let Some(h) = &req.o.hostname {
        runtime::spec::check_hostname("--hostname", h)?;
    }
    confine::parse(&req.o.confine)?;
    let img = find_image(&store, &req.image)?;
    let lower = store.rootfs(&img)?;
    let pod = req.pod.as_deref().map(|p| pod_join(ctx, p, req)).transpose()?;
    let (net, network) = match &pod {
        Some(p) => (Net::Path(p.netns.clone()), None),
        None => parse_network(ctx, req.net.as_deref())?,
    };
    if network.is_none() && (req.ip.is_some() || req.mac.is_some()) {
        bail!("--ip and --mac need a network (--network NAME)");
    }
    for p in &req.ports {
        p.parse::<crate::net::ports::PortSpec>()?;
    }
    let mut ports = req.ports.clone();
    if req.publish_all {
        for key in &img.config.exposed_ports {
            crate::net::ports::exposed(key)?;
            ports.push(key.clone());
        }
    }
    if network.is_none() && !ports.is_empty() {
        bail!(
            "publishing ports needs an rcon network (--network NAME), not --network {}",
            req.net.as_deref().unwrap_or("none")
        );
    }
    if let Some(n) = &network {
        crate::net::manage::check_network(ctx, n)?;
    }
    if network.is_none() && !req.aliases.is_empty() {
        bail!("--network-alias needs a network (--network NAME)");
    }
    let hosts: String = req.add_hosts.iter().map(|h| resolv::host_line(h)).collect::<Result<_>>()?;
    let attached = pod.as_ref().map_or(network.clone(), |p| p.network.clone());
    let resolver = attached.as_deref().map(|n| crate::net::manage::resolver_of(ctx, n)).transpose()?.flatten();
    if let (Some(_), Some(n)) = (resolver, &attached) {
        if let Some(name) = &req.name {
            resolv::check_label("--name", name, n)?;
        }
        req.aliases.iter().try_for_each(|a| resolv::check_label("--network-alias", a, n))?;
    }
    let mode = match (resolver, &attached, &net) {
        (Some(gw), _, _) => resolv::Mode::Resolver(gw),
        (None, Some(_), _) | (None, None, Net::Path(_)) => resolv::Mode::NoDns,
        (None, None, _) => resolv::Mode::Host,
    };
    if req.detach && req.o.tty {
        bail!("-d with -t needs attach, which rcon does not have yet: drop -t");
    }
    let id = names::new_id()?;
    let name = req.name.clone().unwrap_or_else(|| id[..12].to_string());
    // Who is making it: gc leaves a run in progress alone. The data dir
    // comes before the name, so a name whose container has no dir at all
    // is a killed run's, which gc removes.
    // `creating` is declared before `undo`, so a failed run is undone before
    // an `rm` waiting for it goes on.
    let (dir, creating) = rootfs::create_dir(ctx, &id, &runtime::state::Creator::me())?;
    let mut undo = Undo { ctx, id: id.clone(), armed: true };
    reserve_name(ctx, &name, &id)?;
    let root = rootfs::mount_overlay(&dir, &lower)?;
    let hostname = match &pod {
        Some(p) => p.hostname.clone(),
        None => req.o.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
    };
    let joins: Vec<(&'static str, PathBuf)> =
        pod.iter().flat_map(|p| p.namespaces()).filter(|(t, _)| *t != "network").collect();
    let resolv_conf = resolv::container(&resolv::host_text(), mode, &req.dns);
    let etc = write_etc_files(&dir, &hostname, &hosts, &resolv_conf)?;
    let etc_refs: Vec<(PathBuf, &str)> = etc.iter().map(|(p, d)| (p.clone(), *d)).collect();
    let spec = spec::build(&spec::Build {
        img: &img.config,
        image_name: &img.name,
        name: &name,
        rootfs: &root,
        hostname: &hostname,
        o: &req.o,
        net: &net,
        joins: &joins,
        etc_files: &etc_refs,
    })?;
    let mut spec = spec;
    if let Some(n) = &network {
        // The runtime wires it at create, as for any bundle with these annotations.
        let mut ann = spec.annotations().clone().unwrap_or_default();
        let names: Vec<String> = std::iter::once(name.clone()).chain(req.aliases.iter().cloned()).collect();
        crate::net::wire::annotate(&mut ann, n, req.ip, req.mac, &ports, &names);
        spec.set_annotations(Some(ann));
    }
    if let Some(p) = &pod {
        let mut ann = spec.annotations().clone().unwrap_or_default();
        ann.insert(pod::POD.into(), p.id.clone());
        spec.set_annotations(Some(ann));
    }
    crate::store::write_json(&dir.join("config.json"), &spec)?;
    crate::store::fault("run:mounted");
    let opts = CreateOptions { bundle: dir.clone(), ..Default::default() };
    if req.detach {
        monitor::start(ctx, &id, &opts, req.rm, creating)?;
        undo.armed = false;
        return Ok((id, 0));
    }
    undo.armed = false;
    if !req.interactive && !req.o.tty {
        detach_stdin()?;
    }
    // The hold on the creator record ends once the container is recorded as
    // started (an `rm` waiting for it then finds it whole), or after a failed
    // start is undone.
    let mut creating = Some(creating);
    let res = runtime::run_foreground(ctx, &id, &opts, false, |_| drop(creating.take()));
    let code = match res {
        Ok(code) => code,
        Err(e) => {
            let _ = discard(ctx, &id);
            return Err(e);
        }
    };
    let _ = fs::write(exit_path(ctx, &id), code.to_string());
    if req.rm {
        remove(ctx, &id, true)?;
    }
    Ok((id, code))
}

/// The pod `run --pod` joins; the pod owns the network, the ports and the
/// hostname, so the flags for those are refused.
fn pod_join(ctx: &Context, key: &str, req: &RunRequest) -> Result<pod::Pod> {
    let flags = [
        ("--network", req.net.is_some()),
        ("--ip", req.ip.is_some()),
        ("--mac", req.mac.is_some()),
        ("-p", !req.ports.is_empty()),
        ("-P", req.publish_all),
        ("--hostname", req.o.hostname.is_some()),
    ];
    if let Some((flag, _)) = flags.iter().find(|(_, set)| *set) {
        bail!("--pod {key}: {flag} belongs to the pod (give it to `rcon pod create`)");
    }
    pod::joinable(ctx, key)
}

/// Point our stdin (which the container inherits) at /dev/null.
fn detach_stdin() -> Result<()> {
    use std::os::fd::AsRawFd;
    let null = fs::File::open("/dev/null")?;
    // SAFETY: no memory is passed; fd 0 is stdin, which nothing in this process owns as an OwnedFd,
    // so pointing it at another open file breaks no owner.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("redirecting stdin");
    }
    Ok(())
}

/// /etc/hosts (with the `--add-host` lines), /etc/hostname and /etc/resolv.conf for the container,
/// kept in its data dir and bind-mounted.
fn write_etc_files(
    dir: &Path,
    hostname: &str,
    more_hosts: &str,
    resolv_conf: &str,
) -> Result<Vec<(PathBuf, &'static str)>> {
    let hosts = dir.join("hosts");
    fs::write(
        &hosts,
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n{more_hosts}"),
    )?;
    let hn = dir.join("hostname");
    fs::write(&hn, format!("{hostname}\n"))?;
    let rc = dir.join("resolv.conf");
    fs::write(&rc, resolv_conf)?;
    Ok(vec![(hosts, "/etc/hosts"), (hn, "/etc/hostname"), (rc, "/etc/resolv.conf")])
}
