//! Containers after `run`: list with names and images, logs, stop, rm.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use serde::Serialize;

use super::names;
use crate::runtime::{self, State, Status};
use crate::store::Broken;
use crate::Context;

/// One line of `rcon ps`: the OCI state plus the engine's view.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub name: String,
    pub image: String,
    pub status: String,
    pub created: String,
    pub command: String,
    pub pid: i32,
    pub bundle: std::path::PathBuf,
    /// Set when the container's state cannot be read: the row knows its id alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<Broken>,
}

/// Every container, oldest first; one whose state cannot be read is a row
/// marked broken, after the others.
pub fn list(ctx: &Context) -> Result<Vec<Row>> {
    let all = runtime::scan(ctx)?;
    let good = all.good.into_iter().map(|st| row(ctx, st));
    Ok(good.chain(all.broken.into_iter().map(broken_row)).collect())
}

fn broken_row(b: Broken) -> Row {
    Row {
        id: b.name.clone(),
        name: String::new(),
        image: String::new(),
        status: "broken".into(),
        created: String::new(),
        command: String::new(),
        pid: 0,
        bundle: Default::default(),
        broken: Some(b),
    }
}

fn row(ctx: &Context, st: State) -> Row {
    let status = match (st.status, super::exit_status(ctx, &st.id)) {
        (Status::Stopped, Some(code)) => format!("exited ({code})"),
        (s, _) => s.to_string(),
    };
    let status = if st.oom_killed { format!("{status} OOMKilled") } else { status };
    Row {
        name: names::name_of(&st).to_string(),
        image: st.annotations.get(names::IMAGE).cloned().unwrap_or_default(),
        command: st.annotations.get(names::COMMAND).cloned().unwrap_or_default(),
        id: st.id,
        status,
        created: st.created,
        pid: st.pid,
        bundle: st.bundle,
        broken: None,
    }
}

/// The captured output of a detached container.
pub fn logs(ctx: &Context, key: &str) -> Result<Vec<u8>> {
    let id = names::resolve(ctx, key)?;
    match fs::read(super::log_path(ctx, &id)) {
        Ok(data) => Ok(data),
        Err(_) => bail!("container {key:?} has no logs: only detached containers (run -d) keep them"),
    }
}

/// TERM, then KILL once `grace` has passed; returns when the container has stopped.
pub fn stop(ctx: &Context, key: &str, grace: Duration) -> Result<()> {
    let id = names::resolve(ctx, key)?;
    let st = runtime::state(ctx, &id)?;
    if st.status == Status::Stopped {
        return Ok(());
    }
    runtime::kill(ctx, &id, Signal::SIGTERM, false)?;
    if !wait_stopped(ctx, &id, grace) {
        let _ = runtime::kill(ctx, &id, Signal::SIGKILL, true);
        if !wait_stopped(ctx, &id, Duration::from_secs(10)) {
            bail!("container {key:?} did not stop after SIGKILL");
        }
    }
    Ok(())
}

fn wait_stopped(ctx: &Context, id: &str, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match runtime::state(ctx, id) {
            Ok(st) if st.status != Status::Stopped => {}
            _ => return true,
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Remove a container with everything the engine made for it: the runtime
/// state, the overlay and its upper dir, the log and the name. A running
/// container needs `force`. Safe to repeat.
pub fn remove(ctx: &Context, key: &str, force: bool) -> Result<()> {
    // Before its state exists, a container is found by name through the
    // run's name reservation alone.
    let id = names::resolve(ctx, key).ok().or_else(|| super::reserved_id(ctx, key)).unwrap_or_else(|| key.to_string());
    // A run (or the monitor of a killed `run -d`) holds its creator record
    // until the container is recorded as started or undone (rootfs::Creating):
    // waiting for it here, we then find the container whole, or gone. Without
    // the wait, an `rm` between a killed `run -d` and its monitor's start
    // found nothing, or a half-made container, and the monitor then started
    // it. gc leaves such a container alone meanwhile; the `rm` is what ends it.
    // Once created it is not waited for: only the start itself is left, and
    // the monitor of an older rcon holds the record for the container's life.
    let created = runtime::state(ctx, &id).is_ok_and(|st| st.status != Status::Creating);
    let _made = if created {
        None
    } else {
        super::rootfs::wait_made(&super::rootfs::container_dir(ctx, &id), super::rootfs::create_wait()?)?
    };
    remove_id(ctx, key, &id, force)
}

/// The run's own undo of a container it failed to start: it still holds the
/// creator record, so unlike `remove` it must not wait for it.
pub(super) fn discard(ctx: &Context, id: &str) -> Result<()> {
    remove_id(ctx, id, id, true)
}

fn remove_id(ctx: &Context, key: &str, id: &str, force: bool) -> Result<()> {
    match runtime::state(ctx, id) {
        Ok(st) => {
            if st.status == Status::Running && !force {
                bail!("container {key:?} is running: stop it first or use -f");
            }
            runtime::delete(ctx, id, true)?;
        }
        // A state that cannot be read: its processes and cgroup are found
        // through it, so nothing of the container is removed.
        Err(e) if ctx.container_dir(id).join(runtime::state::STATE_FILE).exists() => return Err(e),
        Err(_) if !super::rootfs::container_dir(ctx, id).exists() => bail!("no container named {key:?}"),
        Err(_) => {}
    }
    forget(ctx, id)
}

/// Drop what the engine keeps for `id` once the runtime state is gone: the
/// overlay and its data dir, the log and the name. A no-op for OCI bundles.
///
/// The data dir goes last: while it exists, `rm ID` still finds the
/// container, and once it is gone everything else is too.
pub fn forget(ctx: &Context, id: &str) -> Result<()> {
    let _ = fs::remove_file(super::log_path(ctx, id));
    if let Ok(rd) = fs::read_dir(super::names_dir(ctx)) {
        for e in rd.flatten() {
            if fs::read_to_string(e.path()).is_ok_and(|owner| owner.trim() == id) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    super::rootfs::cleanup(ctx, id)
}
