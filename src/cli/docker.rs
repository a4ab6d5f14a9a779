//! Docker-style container management: logs, stop, rm.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use rcon::engine;
use rcon::Context;

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub name: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds between TERM and KILL.
    #[arg(long, short = 't', default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(long, short = 'f')]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn logs(ctx: &Context, a: LogsArgs) -> Result<i32> {
    std::io::stdout().write_all(&engine::logs(ctx, &a.name)?)?;
    Ok(0)
}

pub fn stop(ctx: &Context, a: StopArgs) -> Result<i32> {
    for n in &a.names {
        engine::stop(ctx, n, Duration::from_secs(a.time))?;
        println!("{n}");
    }
    Ok(0)
}

/// Like docker, remove what can be removed and report the rest on one line.
pub fn rm(ctx: &Context, a: RmArgs) -> Result<i32> {
    let mut errors = Vec::new();
    for n in &a.names {
        match engine::remove(ctx, n, a.force) {
            Ok(()) => println!("{n}"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("; "));
    }
    Ok(0)
}
