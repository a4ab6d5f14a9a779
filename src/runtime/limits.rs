//! A running container's limits and usage: `update` (as runc's), the stats
//! and OOM events of `events`, and whether the kernel OOM-killed it.

use std::fs;
use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags};
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use super::cgroup::{self, apply, resources, stats, Host};
use super::container::{self, dir_of};
use super::state::{State, Status};
use crate::sys::pidfd::Pidfd;
use crate::Context;

fn dirs(st: &State) -> stats::Dirs<'_> {
    stats::Dirs { v2: st.cgroup.as_deref(), v1: &st.v1_cgroups }
}

/// Record OOMKilled in the state of a stopped container whose memory
/// group counted a kill (its groups stay until delete).
pub fn note_oom(dir: &Path, st: &mut State) {
    if st.status == Status::Stopped && !st.oom_killed && stats::oom_kills(&dirs(st)) > 0 {
        st.oom_killed = true;
        if let Err(e) = st.save(dir) {
            tracing::warn!(id = %st.id, "recording OOMKilled: {e:#}");
        }
    }
}

fn live(ctx: &Context, id: &str, what: &str) -> Result<State> {
    let st = container::state(ctx, id)?;
    if !matches!(st.status, Status::Created | Status::Running) {
        bail!("container {id:?} is {}: {what} needs a created or running container", st.status);
    }
    Ok(st)
}

/// `update`: apply `r` to the container's groups and keep it in its copy
/// of config.json. A controller the container had no group of gets one,
/// and the container's processes move into it (v1).
pub fn update(ctx: &Context, id: &str, r: &LinuxResources) -> Result<()> {
    let dir = dir_of(ctx, id)?;
    let mut st = live(ctx, id, "update")?;
    let host = Host::probe();
    let writes =
        resources::plan(r, &|c| host.version(c)).map_err(|e| anyhow!("update: {}", e.trim_start_matches("field ")))?;
    let mut spec = container::load_spec(&dir)?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let (v1, v2): (Vec<_>, Vec<_>) = writes.iter().partition(|w| w.version == resources::Version::V1);
    if !v2.is_empty() {
        let (Some(mount), Some(cg)) = (&host.v2, &st.cgroup) else { bail!("container {id:?} has no cgroup2 group") };
        let ctrls: Vec<&str> = v2.iter().map(|w| w.controller.as_str()).collect();
        apply::enable_v2(mount, cg, &ctrls)?;
        apply::write_all(cg, v2.iter().copied()).map_err(update_error)?;
    }
    let mut controllers: Vec<&str> = v1.iter().map(|w| w.controller.as_str()).collect();
    controllers.dedup();
    for c in controllers {
        let mount = host.v1_mount(c).ok_or_else(|| anyhow!("no {c} hierarchy"))?.to_path_buf();
        let group = match st.v1_cgroups.iter().find(|p| p.starts_with(&mount)) {
            Some(g) => g.clone(),
            None => join_new_group(&dir, &mut st, &mount, c, cgroup::path_for(&mount, id, cgroups_path.as_deref()))?,
        };
        let mine: Vec<&resources::Write> = v1.iter().copied().filter(|w| w.controller == c).collect();
        apply::write_all(&group, memory_order(&group, mine)).map_err(update_error)?;
    }
    let merged = merge(
        serde_json::to_value(spec.linux().as_ref().and_then(|l| l.resources().clone()))?,
        serde_json::to_value(r)?,
    );
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(serde_json::from_value(merged)?));
    spec.set_linux(Some(linux));
    container::save_spec(&dir, &spec)
}

/// The write errors speak of the request, not of config.json.
fn update_error(e: anyhow::Error) -> anyhow::Error {
    anyhow!("{}", format!("{e:#}").replace("config.json: field linux.resources.", "update: "))
}

/// A v1 group made for `update`: recorded in the state first (so delete
/// and gc find it), then made, then the container's processes move in.
fn join_new_group(dir: &Path, st: &mut State, mount: &Path, c: &str, path: PathBuf) -> Result<PathBuf> {
    st.v1_cgroups.push(path.clone());
    st.save(dir)?;
    apply::make_v1(mount, &path, c)?;
    for pid in super::procs::container_pids(st) {
        // A process that exited meanwhile is no error.
        let _ = fs::write(path.join("cgroup.procs"), pid.to_string());
    }
    Ok(path)
}

/// v1 keeps memsw ≥ limit at every step: a limit raised above the current
/// memsw needs memsw raised first (as runc orders them).
fn memory_order<'a>(group: &Path, mut writes: Vec<&'a resources::Write>) -> Vec<&'a resources::Write> {
    let limit = writes.iter().find(|w| w.file == "memory.limit_in_bytes").and_then(|w| w.value.parse::<i64>().ok());
    let memsw =
        fs::read_to_string(group.join("memory.memsw.limit_in_bytes")).ok().and_then(|s| s.trim().parse::<i64>().ok());
    if let (Some(limit), Some(memsw)) = (limit, memsw) {
        if limit > memsw || limit == -1 {
            writes.sort_by_key(|w| w.file != "memory.memsw.limit_in_bytes");
        }
    }
    writes
}

/// `b` over `a`, object by object (update's fields over the config's).
pub fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                let old = a.remove(&k).unwrap_or(Value::Null);
                a.insert(k, merge(old, v));
            }
            Value::Object(a)
        }
        (a, Value::Null) => a,
        (_, b) => b,
    }
}

/// One stats event, as runc prints it.
pub fn stats_event(ctx: &Context, id: &str) -> Result<Value> {
    let st = live(ctx, id, "events")?;
    Ok(json!({"type": "stats", "id": id, "data": stats::stats(&dirs(&st))}))
}

/// `events`: a stats event every `interval` and an OOM event each time the
/// kernel's OOM killer acts in the container, until the container exits.
pub fn events(ctx: &Context, id: &str, interval: Duration, mut emit: impl FnMut(&Value) -> Result<()>) -> Result<()> {
    let st = live(ctx, id, "events")?;
    let exit = Pidfd::open(st.pid).with_context(|| format!("watching pid {}", st.pid))?;
    let watch = OomWatch::new(&st)?;
    let mut kills = stats::oom_kills(&dirs(&st));
    let timeout = crate::sys::pidfd::poll_timeout(interval);
    loop {
        let mut fds = vec![PollFd::new(exit.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = &watch {
            fds.push(PollFd::new(w.fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for events"),
            Ok(0) => emit(&json!({"type": "stats", "id": id, "data": stats::stats(&dirs(&st))}))?,
            Ok(_) => {
                let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
                let oom = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
                if oom {
                    watch.as_ref().map(OomWatch::drain);
                }
                // A kill is counted before the killed process is reaped: seen even when both fire at once.
                let now = stats::oom_kills(&dirs(&st));
                if now > kills || (oom && watch.as_ref().is_some_and(|w| w.every_wakeup)) {
                    emit(&json!({"type": "oom", "id": id}))?;
                }
                kills = now;
                if exited {
                    return Ok(());
                }
            }
        }
    }
}

/// What wakes on OOM: v1's eventfd registered on memory.oom_control (each
/// wakeup is an OOM), v2's inotify on memory.events (a wakeup is any change).
struct OomWatch {
    fd: OwnedFd,
    every_wakeup: bool,
}

impl OomWatch {
    fn new(st: &State) -> Result<Option<OomWatch>> {
        if let Some(g) = st.v1_cgroups.iter().find(|g| g.join("memory.oom_control").exists()) {
            // SAFETY: eventfd takes two integers and returns a new descriptor or -1; no memory is passed.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if efd < 0 {
                return Err(std::io::Error::last_os_error()).context("eventfd");
            }
            // SAFETY: eventfd just returned this descriptor (not -1): nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(efd) };
            let ctl = fs::File::open(g.join("memory.oom_control")).context("opening memory.oom_control")?;
            fs::write(g.join("cgroup.event_control"), format!("{} {}", fd.as_raw_fd(), ctl.as_raw_fd()))
                .context("registering for OOM notifications")?;
            return Ok(Some(OomWatch { fd, every_wakeup: true }));
        }
        let Some(events) = st.cgroup.as_ref().map(|c| c.join("memory.events")).filter(|p| p.exists()) else {
            return Ok(None);
        };
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1; no memory is passed.
        let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if ifd < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify");
        }
        // SAFETY: inotify_init1 just returned this descriptor (not -1): nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())?;
        // SAFETY: the descriptor is ours and open, and `path` is a NUL-terminated string that outlives the call.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
            return Err(std::io::Error::last_os_error()).context("watching memory.events");
        }
        Ok(Some(OomWatch { fd, every_wakeup: false }))
    }

    /// Read what woke us, so that poll waits for the next one.
    fn drain(&self) {
        let mut f = fs::File::from(self.fd.try_clone().expect("dup of an open descriptor"));
        let mut buf = [0u8; 4096];
        let _ = f.read(&mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_fields_merge_over_the_config() {
        let a = json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}});
        let b = json!({"memory": {"limit": 3, "reservation": null}, "cpu": {"shares": 512}});
        assert_eq!(
            merge(a, b),
            json!({"memory": {"limit": 3, "swap": 2}, "pids": {"limit": 5}, "cpu": {"shares": 512}})
        );
        assert_eq!(merge(Value::Null, json!({"pids": {"limit": 1}})), json!({"pids": {"limit": 1}}));
    }
}
