//! The OCI lifecycle commands: create, start, state, kill, delete, list, ps.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use rcon::runtime::{self, CreateOptions};
use rcon::Context;

#[derive(Args, Debug)]
pub struct IdArg {
    /// Container id.
    pub id: String,
}

#[derive(Args, Debug)]
pub struct BundleOpts {
    /// Path to the OCI bundle (default: the current directory).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's init pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when `terminal` is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Use chroot with MS_MOVE instead of pivot_root (for ramfs roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Pass this many extra fds (from 3) into the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub no_new_keyring: bool,
}

impl BundleOpts {
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub id: String,
    #[command(flatten)]
    pub opts: BundleOpts,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Send the signal to every process of the container.
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// Signal name (TERM, SIGKILL) or number (default TERM).
    #[arg(default_value = "TERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill a running container before deleting it.
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// Print only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    pub id: String,
}

pub fn create(ctx: &Context, a: CreateArgs) -> Result<i32> {
    runtime::create(ctx, &a.id, &a.opts.options())?;
    Ok(0)
}

pub fn start(ctx: &Context, a: IdArg) -> Result<i32> {
    runtime::start(ctx, &a.id)?;
    Ok(0)
}

pub fn state(ctx: &Context, a: IdArg) -> Result<i32> {
    let st = runtime::state(ctx, &a.id)?;
    println!("{}", serde_json::to_string_pretty(&st)?);
    Ok(0)
}

pub fn kill(ctx: &Context, a: KillArgs) -> Result<i32> {
    let sig = runtime::signal::parse(&a.signal)?;
    runtime::kill(ctx, &a.id, sig, a.all)?;
    Ok(0)
}

pub fn delete(ctx: &Context, a: DeleteArgs) -> Result<i32> {
    runtime::delete(ctx, &a.id, a.force)?;
    Ok(0)
}

pub fn list(ctx: &Context, a: ListArgs) -> Result<i32> {
    let all = runtime::list(ctx)?;
    if a.quiet {
        all.iter().for_each(|s| println!("{}", s.id));
    } else if a.format == Format::Json {
        println!("{}", serde_json::to_string(&all)?);
    } else {
        println!("{:<20} {:<8} {:<10} {:<40} CREATED", "ID", "PID", "STATUS", "BUNDLE");
        for s in &all {
            println!("{:<20} {:<8} {:<10} {:<40} {}", s.id, s.pid, s.status, s.bundle.display(), s.created);
        }
    }
    Ok(0)
}

pub fn ps(ctx: &Context, a: PsArgs) -> Result<i32> {
    let pids = runtime::pids(ctx, &a.id)?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
    } else {
        println!("{:<8} CMD", "PID");
        for pid in pids {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            println!("{pid:<8} {}", cmd.trim_end());
        }
    }
    Ok(0)
}
