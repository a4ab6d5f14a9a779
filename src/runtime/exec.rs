//! `exec`: a new process in a running container's namespaces, from the
//! container's own process settings or an OCI `process` JSON file.

use std::convert::Infallible;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context as _, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::container::{dir_of, load_spec};
use super::launch::{self, Namespaces};
use super::state::{self, Status};
use super::sync::Msg;
use super::{cgroup, console, process, seccomp, supervise, ExecOptions};
use crate::{store, Context};

/// Namespaces to enter, the mount namespace last (it changes our root).
const KINDS: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(0x80)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

pub fn exec(ctx: &Context, id: &str, o: ExecOptions) -> Result<i32> {
    let dir = dir_of(ctx, id)?;
    let st = state::load_live(&dir, id)?;
    if st.status != Status::Running {
        bail!("container {id:?} is {}: exec needs a running container", st.status);
    }
    let spec = load_spec(&dir)?;
    let process = build_process(&spec, &o)?;
    let filter = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let warning = process::ambient_warning(&process);
    let terminal = process.terminal().unwrap_or(false);
    let (console, ours) = match (terminal, &o.console_socket, o.detach) {
        (false, _, _) => (None, None),
        (true, Some(path), _) => {
            (Some(UnixStream::connect(path).with_context(|| format!("--console-socket {}", path.display()))?), None)
        }
        (true, None, false) => {
            let (a, b) = UnixStream::pair()?;
            (Some(b), Some(a))
        }
        (true, None, true) => bail!("a detached exec with a terminal needs --console-socket"),
    };
    let join = container_namespaces(st.pid)?;
    if !o.detach {
        supervise::prepare()?;
    }
    let cgroup = st.cgroup.as_deref().map(cgroup::open_dir).transpose()?;
    let v1_cgroups = cgroup::open_dirs(&st.v1_cgroups)?;
    let ns = Namespaces { join, new: CloneFlags::empty(), id_maps: None, cgroup, v1_cgroups };
    let (pid, mut chan) = launch::spawn(ns, move |_chan| run_child(&process, filter.as_ref(), console))?;
    // EOF means execve closed the channel: the process runs.
    if let Some(Msg::Error { msg }) = chan.recv()? {
        bail!("exec in container {id:?}: {msg}");
    }
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    if let Some(p) = &o.pid_file {
        store::write_atomic(p, pid.to_string().as_bytes()).context("--pid-file")?;
    }
    if o.detach {
        return Ok(0);
    }
    let pty = ours.map(|s| console::recv_fd(&s)).transpose()?;
    supervise::wait(pid, pty)
}

fn run_child(process: &Process, seccomp: Option<&LinuxSeccomp>, console: Option<UnixStream>) -> Result<Infallible> {
    // An exec'd process is confined as the container's init is.
    let filter = seccomp::compile(seccomp)?;
    nix::unistd::setsid().context("setsid")?;
    if let Some(c) = &console {
        let size = process.console_size().map(|b| (b.height() as u16, b.width() as u16));
        console::setup(c, size)?;
    }
    drop(console);
    let exec = process::resolve(process)?;
    nix::unistd::chdir(process.cwd().as_path()).with_context(|| format!("cwd {}", process.cwd().display()))?;
    process::apply(process, filter.as_ref())?;
    process::exec(&exec, 0)
}

/// The init's namespaces that differ from ours.
fn container_namespaces(pid: i32) -> Result<Vec<(CloneFlags, File)>> {
    let mut out = Vec::new();
    for (name, flag) in KINDS {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let Ok(their_meta) = std::fs::metadata(&theirs) else {
            continue;
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
        if ours.is_some_and(|m| m.ino() == their_meta.ino() && m.dev() == their_meta.dev()) {
            continue;
        }
        out.push((flag, File::open(&theirs).with_context(|| format!("opening {theirs}"))?));
    }
    Ok(out)
}

/// The container's process settings with exec's arguments and overrides.
fn build_process(spec: &oci_spec::runtime::Spec, o: &ExecOptions) -> Result<Process> {
    if let Some(path) = &o.process_file {
        let p: Process = store::read_json(path)?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            bail!("{}: field args: must name a command", path.display());
        }
        return Ok(p);
    }
    if o.args.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(o.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some(u) = &o.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let mut user = p.user().clone();
        user.set_uid(uid.parse().with_context(|| format!("--user {u}: uid must be a number"))?);
        user.set_gid(gid.parse().with_context(|| format!("--user {u}: gid must be a number"))?);
        p.set_user(user);
    }
    Ok(p)
}
