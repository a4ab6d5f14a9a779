//! The lifecycle on disk: create, start, state, kill, delete, list.
//!
//! `<root>/<id>/` holds state.json, a copy of config.json (hooks still run
//! if the bundle changes) and start.sock while the init waits for `start`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::hooks::{self, Kind};
use super::init::{self, InitConfig};
use super::launch::{self, Namespaces};
use super::spec::{self, ns_flag};
use super::state::{self, State, Status, START_SOCKET};
use super::sync::Msg;
use super::{cgroup, device_prog, process, procs, rootfs, CreateOptions};
use crate::store::{Broken, Listing, Read as Record};
use crate::{store, Context};

const SPEC_COPY: &str = "config.json";

/// The container dir, after checking that the id is a safe name.
pub fn dir_of(ctx: &Context, id: &str) -> Result<PathBuf> {
    store::validate_id("container", id)?;
    Ok(ctx.container_dir(id))
}

/// A path to `name` inside `dir` that fits in sun_path however deep `dir` is.
fn short_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

pub fn load_spec(dir: &Path) -> Result<Spec> {
    store::read_json(&dir.join(SPEC_COPY))
}

/// Replace the container's copy of config.json (`update` changes its limits).
pub fn save_spec(dir: &Path, spec: &Spec) -> Result<()> {
    store::write_json(&dir.join(SPEC_COPY), spec)
}

/// Undo a half-done create: kill the init, remove the state dir.
struct Undo {
    dir: PathBuf,
    pid: Option<i32>,
    cgroup: Option<PathBuf>,
    v1_cgroups: Vec<PathBuf>,
    host_mounts: Option<PathBuf>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
            // Reap it if it became our child (run sets us as subreaper).
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        for cg in self.cgroup.iter().chain(&self.v1_cgroups) {
            let _ = cgroup::remove(cg);
        }
        if let Some(rootfs) = &self.host_mounts {
            let _ = rootfs::unmount_under(rootfs);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Make `<root>/<id>` with `st` and the spec copy already inside: written in
/// a dir named after its creator (`.new-PID-START-create`), then renamed
/// without replacing, which is also the atomic duplicate-id check. So gc
/// never sees a container dir without its state, and removes a `.new-` dir
/// whose creator is gone (`remove_half_made_dirs`). No one reads the `.new-`
/// dir, so its files are written in place: four metadata operations in all.
fn make_dir(dir: &Path, st: &State, spec: &Spec) -> Result<()> {
    let creator = st.creator.unwrap_or_else(state::Creator::me);
    let tmp = dir.with_file_name(creator.new_dir_name("create"));
    fs::DirBuilder::new().mode(0o711).create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = store::write_new_json(&tmp.join(state::STATE_FILE), st)
        .and_then(|()| store::write_new_json(&tmp.join(SPEC_COPY), spec));
    let renamed = written.and_then(|()| {
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &tmp,
            nix::fcntl::AT_FDCWD,
            dir,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST => {
                crate::error::Error::Exists(format!("container {:?} already exists", st.id)).into()
            }
            e => anyhow::Error::from(e).context(format!("creating {}", dir.display())),
        })
    });
    if renamed.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    renamed
}

/// Remove the `.new-` dirs of creates that were killed before their rename
/// (nothing but a state file is in one). Returns their names.
fn remove_half_made_dirs(ctx: &Context) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(&ctx.root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if state::Creator::of_new_dir(&name).is_some_and(|c| !c.alive()) {
            fs::remove_dir_all(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            out.push(name);
        }
    }
    Ok(out)
}

/// How a created init learns that it may exec the user's process.
#[derive(Clone, Copy, PartialEq)]
enum Gate {
    /// `rcon start`, from any process, through start.sock (runc's exec fifo).
    Socket,
    /// The creating rcon itself, at once, over the setup channel (`run`).
    Channel,
}

/// A created container, with what `run` needs to start it in the same process.
struct Made {
    state: State,
    spec: Spec,
    chan: super::sync::Channel,
}

/// Create the container; its init waits on the start socket. `console`
/// overrides --console-socket (run uses an internal pair for its own pty).
pub fn create(ctx: &Context, id: &str, o: &CreateOptions, console: Option<UnixStream>) -> Result<State> {
    make(ctx, id, o, console, Gate::Socket).map(|m| m.state)
}

/// create + start in one process (`run`): the init is told to start over the
/// setup channel, so no start socket is made and no state is read back.
/// The container reads `running` from the moment it is created. Returns the
/// state and whether the process has a terminal.
pub fn create_started(
    ctx: &Context,
    id: &str,
    o: &CreateOptions,
    console: Option<UnixStream>,
) -> Result<(State, bool)> {
    let Made { mut state, spec, mut chan } = make(ctx, id, o, console, Gate::Channel)?;
    let started = chan.send(&Msg::Start).and_then(|()| match chan.recv()? {
        // The init's end is close-on-exec: EOF is the exec.
        None => Ok(()),
        Some(Msg::Error { msg }) => Err(anyhow::anyhow!("container {id:?}: {msg}")),
        Some(other) => Err(anyhow::anyhow!("container init: unexpected {other:?}")),
    });
    if let Err(e) = started {
        let _ = delete(ctx, id, true);
        return Err(e);
    }
    state.status = Status::Running;
    hooks::run_warn(&spec, Kind::Poststart, &state.oci_json());
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    Ok((state, terminal))
}

fn make(ctx: &Context, id: &str, o: &CreateOptions, console: Option<UnixStream>, gate: Gate) -> Result<Made> {
    let dir = dir_of(ctx, id)?;
    let mut bundle = spec::load_bundle(&o.bundle)?;
    tracing::debug!(id, "bundle loaded and validated");
    let process = bundle.spec.process().as_ref();
    let terminal = process.and_then(|p| p.terminal()).unwrap_or(false);
    let console = match (terminal, console, &o.console_socket) {
        (false, _, Some(_)) => {
            bail!("--console-socket given but config.json process.terminal is false")
        }
        (false, _, None) => None,
        (true, Some(c), _) => Some(c),
        (true, None, Some(path)) => {
            Some(UnixStream::connect(path).with_context(|| format!("--console-socket {}", path.display()))?)
        }
        (true, None, None) => {
            bail!("config.json process.terminal is true: --console-socket is required")
        }
    };
    // Told once the container exists: a failed create says one line, its error.
    let warning = process.and_then(process::ambient_warning);
    let join = open_joins(&bundle.spec)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&ctx.root)
        .with_context(|| format!("--root {}", ctx.root.display()))?;
    // A pod member nests in its pod's groups (cgroup/sandbox.rs).
    let pod_controllers = cgroup::sandbox::place(ctx, id, &mut bundle.spec)?;
    let mut groups = cgroup::Setup::new(&bundle.spec, id, &pod_controllers)?;
    let cgroup_dir = groups.v2_dir.clone();
    // Device rules go through either v1's devices group or a v2 program.
    let device_prog = device_prog::plan(&bundle.spec, cgroup_dir.as_deref())?;
    if device_prog.is_some() {
        groups.v1.retain(|(g, _, _)| g.controller != "devices");
    }
    let v1 = groups.v1_dirs();
    // Before anything names these groups: the Undo removes what it names.
    refuse_nested_cgroups(ctx, id, cgroup_dir.iter().chain(&v1))?;
    let mut st = State {
        oci_version: state::OCI_VERSION.into(),
        id: id.into(),
        status: Status::Creating,
        pid: 0,
        bundle: bundle.dir.clone(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        created: state::now_rfc3339(),
        pid_start_time: 0,
        own_pid_ns: spec::creates_namespace(&bundle.spec, LinuxNamespaceType::Pid),
        // Recorded now, so that a create beside this one sees it.
        cgroup: cgroup_dir.clone(),
        creator: Some(state::Creator::me()),
        v1_cgroups: v1,
        oom_killed: false,
        // Without a mount namespace of its own, the init mounts in ours.
        host_mounts: (!spec::creates_namespace(&bundle.spec, LinuxNamespaceType::Mount)).then(|| bundle.rootfs.clone()),
    };
    // Recorded before made, so that gc finds them after a crash: the dir
    // appears with this state inside.
    make_dir(&dir, &st, &bundle.spec)?;
    store::fault("create:recorded");
    let mut undo = Undo {
        dir: dir.clone(),
        pid: None,
        cgroup: None,
        v1_cgroups: st.v1_cgroups.clone(),
        host_mounts: st.host_mounts.clone(),
        armed: true,
    };
    if let Some(cg) = &cgroup_dir {
        cgroup::create(cg)?;
        undo.cgroup = Some(cg.clone());
        // Before the init joins the group; rmdir detaches it, so the state
        // needs no record of it.
        if let Some(prog) = &device_prog {
            prog.attach(cg)?;
        }
    }
    groups.apply()?;
    let start = match gate {
        Gate::Socket => {
            let dir_fd = File::open(&dir)?;
            Some(UnixListener::bind(short_path(&dir_fd, START_SOCKET)).context("binding start socket")?)
        }
        Gate::Channel => None,
    };
    let new = spec::namespaces(&bundle.spec)
        .iter()
        .filter(|n| n.path().is_none())
        .fold(nix::sched::CloneFlags::empty(), |acc, n| acc | ns_flag(n.typ()));
    let cfg = InitConfig {
        spec: bundle.spec.clone(),
        rootfs: bundle.rootfs.clone(),
        no_pivot: o.no_pivot,
        preserve_fds: o.preserve_fds,
        console,
        start,
    };
    let cgroup = undo.cgroup.as_deref().map(cgroup::open_dir).transpose()?;
    let v1_cgroups = cgroup::open_dirs(&st.v1_cgroups)?;
    let ns = Namespaces { join, new, id_maps: spec::id_maps(&bundle.spec), cgroup, v1_cgroups };
    let (pid, mut chan) = launch::spawn(ns, move |chan| init::run(cfg, chan))?;
    tracing::debug!(id, pid, "init forked in its namespaces");
    undo.pid = Some(pid);
    st.pid = pid;
    st.pid_start_time = state::proc_start_time(pid).map(|(t, _)| t).unwrap_or(0);
    // The pid is saved with `created`, below, not now: until then the init
    // waits on rcon's messages and dies with rcon, and the container's
    // cgroup holds it for gc, so the record needs no pid yet.
    match chan.expect("mount setup")? {
        Msg::Hooks => {}
        other => bail!("container init: unexpected {other:?}"),
    }
    tracing::debug!(id, "mounts in place");
    let json = st.oci_json();
    // rcon's own networks (the rcon.network annotation) come first, so the
    // bundle's hooks already see the interfaces, as after a CNI plugin.
    super::network::on_create(ctx, id, pid, &st.annotations)?;
    let rest = (|| {
        // runtime-tools (hooks_stdin) expects prestart to see "created", as
        // when the spec ran it at `start`; createRuntime sees "creating".
        let mut pre = st.clone();
        pre.status = Status::Created;
        hooks::run(&bundle.spec, Kind::Prestart, &pre.oci_json())?;
        hooks::run(&bundle.spec, Kind::CreateRuntime, &json)?;
        chan.send(&Msg::HooksDone { state: json.clone() })?;
        match chan.expect("container setup")? {
            Msg::Created => Ok(()),
            other => bail!("container init: unexpected {other:?}"),
        }
    })();
    if let Err(e) = rest {
        let _ = super::network::on_delete(ctx, id);
        return Err(e);
    }
    st.status = Status::Created;
    st.save(&dir)?;
    if let Some(p) = &o.pid_file {
        store::write_atomic(p, pid.to_string().as_bytes()).context("--pid-file")?;
    }
    undo.armed = false;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    tracing::debug!(id, "created: rootfs pivoted, init waits for start");
    Ok(Made { state: st, spec: bundle.spec, chan })
}

/// Refuse groups that nest with another container's (deleting the outer
/// one would kill the inner container too) or that hold rcon itself (the
/// container's limits would bind its caller). An equal group counts too.
fn refuse_nested_cgroups<'a>(ctx: &Context, id: &str, mine: impl Iterator<Item = &'a PathBuf> + Clone) -> Result<()> {
    let field = "config.json: field linux.cgroupsPath";
    for own in cgroup::own_paths() {
        if let Some(c) = mine.clone().find(|c| own.starts_with(c)) {
            bail!("{field}: {} holds rcon itself ({})", c.display(), own.display());
        }
    }
    for (_, dir) in container_dirs(ctx).filter(|(other, _)| other != id) {
        let Ok(other) = State::load(&dir) else { continue };
        for theirs in other.cgroup.iter().chain(&other.v1_cgroups) {
            for c in mine.clone() {
                if let Some(how) = cgroup::nesting(c, theirs) {
                    bail!("{field}: {} {how} of container {} ({})", c.display(), other.id, theirs.display());
                }
            }
        }
    }
    Ok(())
}

/// Open the namespace files to join, in an order that keeps later opens valid.
fn open_joins(spec: &Spec) -> Result<Vec<(nix::sched::CloneFlags, File)>> {
    let mut out = Vec::new();
    for (i, ns) in spec::namespaces(spec).iter().enumerate() {
        if let Some(path) = ns.path() {
            let f = spec::check_ns_file(path, ns.typ())
                .with_context(|| format!("config.json: field linux.namespaces[{i}].path"))?;
            out.push((ns_flag(ns.typ()), f));
        }
    }
    // The user namespace first (it owns the others), the mount namespace last
    // (it changes our root).
    out.sort_by_key(|(f, _)| match *f {
        f if f == ns_flag(LinuxNamespaceType::User) => 0,
        f if f == ns_flag(LinuxNamespaceType::Mount) => 2,
        _ => 1,
    });
    Ok(out)
}

pub fn start(ctx: &Context, id: &str) -> Result<State> {
    let dir = dir_of(ctx, id)?;
    let mut st = state::load_live(&dir, id)?;
    let _lock = store::lock_file(File::open(&dir)?)?;
    st.refresh(&dir);
    if st.status != Status::Created {
        bail!("container {id:?} is {}: only a created container can be started", st.status);
    }
    let spec = load_spec(&dir)?;
    let dir_fd = File::open(&dir)?;
    let sock = short_path(&dir_fd, START_SOCKET);
    let mut conn = UnixStream::connect(&sock).with_context(|| format!("container {id:?}: init is gone"))?;
    conn.write_all(b"s").context("signalling start")?;
    // The init closes the connection by exec (close-on-exec) or writes why it could not.
    let mut err = String::new();
    let _ = conn.read_to_string(&mut err);
    let _ = fs::remove_file(&sock);
    if !err.is_empty() {
        bail!("container {id:?}: {err}");
    }
    st.status = Status::Running;
    hooks::run_warn(&spec, Kind::Poststart, &st.oci_json());
    Ok(st)
}

pub fn state(ctx: &Context, id: &str) -> Result<State> {
    let dir = dir_of(ctx, id)?;
    let mut st = state::load_live(&dir, id)?;
    super::limits::note_oom(&dir, &mut st);
    Ok(st)
}

pub fn kill(ctx: &Context, id: &str, sig: Signal, all: bool) -> Result<()> {
    let st = state(ctx, id)?;
    if !matches!(st.status, Status::Created | Status::Running) {
        bail!("container {id:?} is {}: nothing to signal", st.status);
    }
    if all {
        procs::signal_all(&st, sig);
    } else {
        send_signal(Pid::from_raw(st.pid), sig).with_context(|| format!("signalling pid {}", st.pid))?;
    }
    Ok(())
}

pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<()> {
    let dir = dir_of(ctx, id)?;
    if !dir.exists() {
        return Err(crate::error::Error::NotFound(format!("container {id:?} does not exist")).into());
    }
    let loaded = State::load(&dir);
    let spec = load_spec(&dir).ok();
    if let Ok(mut st) = loaded {
        st.refresh(&dir);
        match st.status {
            Status::Running if !force => {
                return Err(crate::error::Error::Busy(format!(
                    "container {id:?} is running: stop it first or use --force"
                ))
                .into())
            }
            Status::Creating if st.pid != 0 && !force => {
                return Err(crate::error::Error::Busy(format!("container {id:?} is being created: use --force")).into())
            }
            // A stopped container may still have orphans (no pid namespace): those go too.
            _ => {
                // The intent first: a delete killed from here on is finished by gc.
                mark_deleting(&dir);
                procs::signal_all(&st, Signal::SIGKILL);
                if !procs::wait_gone(&st, Duration::from_secs(10)) {
                    bail!("container {id:?}: pid {} did not exit after SIGKILL", st.pid);
                }
                store::fault("delete:killed");
            }
        }
        for cg in st.cgroup.iter().chain(&st.v1_cgroups) {
            cgroup::remove(cg)?;
        }
        if let Some(rootfs) = &st.host_mounts {
            rootfs::unmount_under(rootfs)?;
        }
        // Leases and records go; the veths went with the namespace. A failure
        // here must not keep the container: gc finds what is left.
        if let Err(e) = super::network::on_delete(ctx, id) {
            tracing::warn!(id, "releasing the container's networks: {e:#}");
        }
        st.status = Status::Stopped;
        if let Some(spec) = &spec {
            hooks::run_warn(spec, Kind::Poststop, &st.oci_json());
        }
    } else if !force {
        loaded.context("state is unreadable; use --force to remove it")?;
    }
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

/// The marker a delete leaves first: the deleting rcon, so that gc can tell
/// a delete under way from one that was killed.
const DELETING: &str = "deleting";

/// One small file, not an atomic write: a torn one reads as a dead deleter,
/// and gc then finishes a delete that was asked for anyway.
fn mark_deleting(dir: &Path) {
    let _ = fs::write(dir.join(DELETING), serde_json::to_vec(&state::Creator::me()).unwrap_or_default());
}

fn deleter_gone(dir: &Path) -> bool {
    match fs::read(dir.join(DELETING)) {
        Ok(b) => serde_json::from_slice::<state::Creator>(&b).map_or(true, |c| !c.alive()),
        Err(_) => false,
    }
}

/// The containers' dirs under the root, by id: dot dirs are the engine's (names, logs) or a create's
/// still being made (`.new-`), never a container.
fn container_dirs(ctx: &Context) -> impl Iterator<Item = (String, PathBuf)> {
    fs::read_dir(&ctx.root).into_iter().flatten().flatten().filter_map(|e| {
        let id = e.file_name().to_string_lossy().into_owned();
        (!id.starts_with('.')).then(|| (id, e.path()))
    })
}

/// Remove the `.new-` dirs of killed creates, then the containers an rcon
/// process now gone left half-made or half-deleted.
pub fn gc(ctx: &Context) -> Result<Collected> {
    let dirs = remove_half_made_dirs(ctx)?;
    let mut containers = Vec::new();
    for id in abandoned(ctx)? {
        delete(ctx, &id, true)?;
        containers.push(id);
    }
    Ok(Collected { dirs, containers })
}

/// What the runtime's gc removed.
#[derive(Debug, Default)]
pub struct Collected {
    /// `.new-` dirs of creates killed before their rename (no container yet).
    pub dirs: Vec<String>,
    /// Containers removed, by id.
    pub containers: Vec<String>,
}

/// Containers that an rcon process now gone left half-made (killed in
/// `create`) or half-deleted (killed in `delete`).
fn abandoned(ctx: &Context) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (id, dir) in container_dirs(ctx) {
        // Before the state: a delete killed inside its final remove_dir_all
        // may have taken state.json already (the kill sweep found such dirs).
        if deleter_gone(&dir) {
            out.push(id);
            continue;
        }
        let Ok(st) = State::load(&dir) else { continue };
        if st.status == Status::Creating && st.creator.is_none_or(|c| !c.alive()) {
            out.push(st.id);
        }
    }
    Ok(out)
}

/// Every container whose state can be read, oldest first, and those whose
/// state cannot (named by their directory).
pub fn scan(ctx: &Context) -> Result<Listing<State>> {
    let mut out = Listing::default();
    for (id, dir) in container_dirs(ctx) {
        let p = dir.join(state::STATE_FILE);
        match store::read_record::<State>(&p) {
            Record::Good(mut st) => {
                st.refresh(&dir);
                super::limits::note_oom(&dir, &mut st);
                out.good.push(st);
            }
            Record::Bad(cause) => out.broken.push(Broken::new("container", id, &p, cause)),
            _ => {}
        }
    }
    out.good.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

pub fn pids(ctx: &Context, id: &str) -> Result<Vec<i32>> {
    Ok(procs::container_pids(&state(ctx, id)?))
}
