//! `rcon exec`: run a process in a running container's namespaces.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rcon::runtime::{self, ExecOptions};
use rcon::Context;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Read the process (OCI `process` JSON) from this file, as containerd does.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a pty (sent to --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Keep stdin open (always the case in the foreground; for docker users).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Do not wait for the process.
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

pub fn exec(ctx: &Context, a: ExecArgs) -> Result<i32> {
    let opts = ExecOptions {
        process_file: a.process,
        tty: a.tty,
        detach: a.detach,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        cwd: a.cwd,
        env: a.env,
        user: a.user,
        args: a.cmd,
    };
    // Docker-style names and id prefixes work here too.
    let id = rcon::engine::names::resolve(ctx, &a.id)?;
    runtime::exec(ctx, &id, opts)
}
