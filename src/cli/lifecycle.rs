//! The OCI lifecycle commands: create, start, state, kill, delete, list, ps.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use rcon::engine;
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
    #[arg(long, short = 'b')]
    pub bundle: Option<PathBuf>,
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
            bundle: self.bundle.clone().unwrap_or_else(|| PathBuf::from(".")),
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
    /// Accepted for docker users: stopped containers are always listed.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Print only the containers' short ids, as `docker ps -q` (with an id: only the pids).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// With an id: that container's processes (runc's `ps`). Without: the containers.
    pub id: Option<String>,
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
    // As with exec, a docker-style name or id prefix works too; an exact id wins.
    let id = engine::names::resolve(ctx, &a.id)?;
    runtime::kill(ctx, &id, sig, a.all)?;
    Ok(0)
}

pub fn delete(ctx: &Context, a: DeleteArgs) -> Result<i32> {
    runtime::delete(ctx, &a.id, a.force)?;
    // A container made by `run IMAGE` also has an overlay, a name and a log.
    engine::forget(ctx, &a.id)?;
    Ok(0)
}

pub fn list(ctx: &Context, a: ListArgs) -> Result<i32> {
    let rows = engine::list(ctx)?;
    if a.quiet {
        warn_rows(&rows);
        rows.iter().filter(|r| r.broken.is_none()).for_each(|r| println!("{}", r.id));
        return Ok(0);
    }
    print_rows(&rows, a.format)
}

fn warn_rows(rows: &[engine::Row]) {
    super::warn_broken(rows.iter().filter_map(|r| r.broken.as_ref()));
}

/// ID, name, image, status, pid, created and command: `docker ps -a` plus runc's pid.
fn print_rows(rows: &[engine::Row], format: Format) -> Result<i32> {
    warn_rows(rows);
    if format == Format::Json {
        println!("{}", serde_json::to_string(rows)?);
        return Ok(0);
    }
    let head = ["ID", "NAME", "IMAGE", "STATUS", "PID", "CREATED", "COMMAND"];
    let mut table = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for r in rows {
        let created = r.created.get(..19).unwrap_or(&r.created).replace('T', " ");
        let id = engine::names::short_id(&r.id).to_string();
        let pid = if r.status == "running" || r.status == "created" { r.pid.to_string() } else { "-".into() };
        table.push(match &r.broken {
            Some(b) => vec![id, "-".into(), "-".into(), "broken".into(), pid, "-".into(), b.cause.clone()],
            None => vec![id, r.name.clone(), r.image.clone(), r.status.clone(), pid, created, r.command.clone()],
        });
    }
    super::table::print(&[15, 20, 24, 14, 8, 22], &table);
    Ok(0)
}

pub fn ps(ctx: &Context, a: PsArgs) -> Result<i32> {
    let Some(id) = a.id else {
        let rows = engine::list(ctx)?;
        if a.quiet {
            warn_rows(&rows);
            rows.iter().filter(|r| r.broken.is_none()).for_each(|r| println!("{}", engine::names::short_id(&r.id)));
            return Ok(0);
        }
        return print_rows(&rows, a.format);
    };
    let pids = runtime::pids(ctx, &id)?;
    if a.quiet {
        pids.iter().for_each(|p| println!("{p}"));
    } else if a.format == Format::Json {
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
