//! Container DNS (docs/DNS.md): one resident resolver per node (`rcon dns`,
//! a supervisor and its worker, sys/supervise.rs), listening on the gateway
//! of every bridge network with DNS on. It is started when a DNS network
//! first needs it and stopped when none does; its pid is recorded under the
//! state root (`<root>/.dns/daemon.json`) so that gc finds it after a crash.
//! Writers tell it about changes through `<root>/.dns/control.sock`: a
//! connection alone is the message, so the attach path makes no file.

pub mod across;
mod across_etcd;
pub mod answer;
mod forward;
pub mod resolv;
mod server;
pub mod table;

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::sys::proc::Creator;
use crate::sys::supervise;
use crate::Context;

const WHAT: &str = "rcon dns";

/// Under the state root, hidden as the engine's `.names`: no container id starts with a dot.
fn dir(ctx: &Context) -> PathBuf {
    ctx.root.join(".dns")
}

fn record(ctx: &Context) -> PathBuf {
    dir(ctx).join("daemon.json")
}

fn control(ctx: &Context) -> PathBuf {
    dir(ctx).join("control.sock")
}

/// The worker's stdout and stderr: what it has to say once it runs (the names across nodes).
pub fn log(ctx: &Context) -> PathBuf {
    dir(ctx).join("log")
}

/// `rcon dns`'s arguments: the roots it serves, then `--worker` for the worker.
fn args(ctx: &Context, worker: bool) -> Vec<String> {
    let mut a = vec![
        "--root".to_string(),
        ctx.root.display().to_string(),
        "--data-root".into(),
        ctx.data_root.display().to_string(),
        "dns".into(),
    ];
    if worker {
        a.push("--worker".into());
    }
    a
}

/// `rcon dns`: the supervisor (what rcon starts), or with `worker` the resolver itself.
pub fn main(ctx: &Context, worker: bool) -> Result<i32> {
    if worker {
        server::run(&control(ctx), &ctx.data_root, || supervise::stdio_to_log(&log(ctx)))
    } else {
        let a = args(ctx, true);
        supervise::run(&ctx.root, || supervise::spawn_worker(&a, "the dns worker"))
    }
}

/// Whether some network wants the resolver.
fn needed(ctx: &Context) -> Result<bool> {
    Ok(super::network::store(&ctx.data_root).list()?.iter().any(|n| table::serves(n).is_some()))
}

/// The recorded resolver, when it still runs.
fn running(ctx: &Context) -> Option<Creator> {
    let c: Creator = serde_json::from_slice(&std::fs::read(record(ctx)).ok()?).ok()?;
    c.alive().then_some(c)
}

/// The records changed (an endpoint, a service): tell the resolver, or start it when a DNS network
/// needs it and it is not running. With `wait`, return once it answers from the new records (a name
/// that is gone must be NXDOMAIN at once); the attach path does not wait.
pub fn changed(ctx: &Context, wait: bool) -> Result<()> {
    if server::poke(&control(ctx), wait) {
        return Ok(());
    }
    sync(ctx).map(drop)
}

/// Bring the resolver in line with the networks: started when one needs it and it is not running,
/// told to reload when it runs and is needed, stopped when none needs it. Returns what it did.
pub fn sync(ctx: &Context) -> Result<Option<&'static str>> {
    let d = dir(ctx);
    if !d.exists() && !needed(ctx)? {
        return Ok(None);
    }
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let _lock = crate::store::lock(&d.join("lock"))?;
    let needed = needed(ctx)?;
    match running(ctx) {
        Some(_) if needed => {
            server::poke(&control(ctx), true);
            Ok(None)
        }
        None if needed => {
            let c = supervise::start(args(ctx, false), WHAT)?;
            if let Err(e) = crate::store::write_json(&record(ctx), &c) {
                let _ = supervise::stop(c, WHAT);
                return Err(e);
            }
            Ok(Some("started"))
        }
        Some(c) => {
            supervise::stop(c, WHAT)?;
            forget(ctx);
            Ok(Some("stopped"))
        }
        None => {
            forget(ctx);
            Ok(None)
        }
    }
}

/// The record and the control socket of a resolver that is gone.
fn forget(ctx: &Context) {
    let _ = std::fs::remove_file(record(ctx));
    let _ = std::fs::remove_file(control(ctx));
}

/// The recorded resolver's pid, when it runs (for `network inspect` and tests).
pub fn pid(ctx: &Context) -> Option<i32> {
    running(ctx).map(|c| c.pid)
}
