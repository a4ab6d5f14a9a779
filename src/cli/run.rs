//! `rcon run --bundle DIR [--detach] ID`: create, start and wait.

use anyhow::Result;
use clap::Args;
use rcon::runtime;
use rcon::Context;

use super::lifecycle::BundleOpts;

#[derive(Args, Debug)]
pub struct RunArgs {
    pub id: String,
    #[command(flatten)]
    pub opts: BundleOpts,
    /// Return once the container has started instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
}

/// The exit status is the container's own, or 128+N when signal N killed it.
pub fn run(ctx: &Context, a: RunArgs) -> Result<i32> {
    runtime::run(ctx, &a.id, &a.opts.options(), a.detach)
}
