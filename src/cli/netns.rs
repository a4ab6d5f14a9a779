//! `rcon netns …`: named network namespaces with the `ip netns` contract.

use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use rcon::net::netns;
use rcon::Context;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum NetnsCmd {
    /// Create a named network namespace (a bind mount under --netns-dir).
    Add { name: String },
    /// List named network namespaces.
    #[command(alias = "ls", alias = "show")]
    List,
    /// Delete named network namespaces.
    #[command(alias = "del", alias = "rm")]
    Delete { names: Vec<String> },
    /// Run a command inside a named network namespace.
    Exec {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print the names of the namespaces that a process is in (default: self).
    Identify { pid: Option<i32> },
    /// Give a name to the network namespace of a running process.
    Attach { name: String, pid: i32 },
    /// Print the pids of the processes in a named network namespace.
    Pids { name: String },
}

pub fn netns(ctx: &Context, cmd: NetnsCmd) -> Result<i32> {
    let dir = ctx.netns_dir.as_path();
    match cmd {
        NetnsCmd::Add { name } => drop(netns::add(dir, &name)?),
        NetnsCmd::List => netns::list(dir)?.iter().for_each(|n| println!("{n}")),
        NetnsCmd::Delete { names } => delete(dir, &names)?,
        NetnsCmd::Exec { name, cmd } => exec(dir, &name, &cmd)?,
        NetnsCmd::Identify { pid } => {
            let pid = pid.unwrap_or(std::process::id() as i32);
            netns::identify(dir, pid)?.iter().for_each(|n| println!("{n}"));
        }
        NetnsCmd::Attach { name, pid } => drop(netns::attach(dir, &name, pid)?),
        NetnsCmd::Pids { name } => netns::pids(dir, &name)?.iter().for_each(|p| println!("{p}")),
    }
    Ok(0)
}

/// Delete every name given, even after a failure; report all failures on one line.
fn delete(dir: &Path, names: &[String]) -> Result<()> {
    if names.is_empty() {
        bail!("netns delete: no name given");
    }
    let errors: Vec<String> =
        names.iter().filter_map(|n| netns::delete(dir, n).err()).map(|e| format!("{e:#}")).collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Like `ip netns exec`: only returns on failure, otherwise the process
/// becomes `cmd` and its exit status is the command's.
///
/// This process is single-threaded here, which both `setns` (per thread) and
/// `unshare(CLONE_NEWNS)` (refused when the fs info is shared) rely on.
fn exec(dir: &Path, name: &str, cmd: &[String]) -> Result<()> {
    let ns = netns::open(dir, name)?;
    setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering netns {name}"))?;
    drop(ns);
    // A private mount namespace, so that the fresh /sys and the /etc binds
    // below are seen by the command alone.
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    // rslave: keep our mounts from propagating back, yet still see new names.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .context("making / a slave mount")?;
    remount_sys(name)?;
    bind_etc(name);
    let err = std::process::Command::new(&cmd[0]).args(&cmd[1..]).exec();
    bail!("exec {}: {err}", cmd[0])
}

/// Mount a sysfs made now, so that /sys/class/net shows this netns' devices.
fn remount_sys(name: &str) -> Result<()> {
    let mut flags = MsFlags::empty();
    if umount2("/sys", MntFlags::MNT_DETACH).is_err() {
        // The old /sys stays underneath; a read-only one can only be covered read-only.
        if statvfs("/sys").is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY)) {
            flags |= MsFlags::MS_RDONLY;
        }
    }
    mount(Some(name), "/sys", Some("sysfs"), flags, None::<&str>).context("mounting a fresh /sys")
}

/// Per-namespace config: each file in /etc/netns/NAME is bound over /etc/FILE
/// (resolv.conf, hosts, …). Like `ip`, a failed bind only warns.
fn bind_etc(name: &str) {
    let Ok(rd) = std::fs::read_dir(Path::new("/etc/netns").join(name)) else {
        return;
    };
    for entry in rd.flatten() {
        let src = entry.path();
        let dst = Path::new("/etc").join(entry.file_name());
        if let Err(e) = mount(Some(&src), &dst, Some("none"), MsFlags::MS_BIND, None::<&str>) {
            tracing::warn!("binding {} onto {}: {e}", src.display(), dst.display());
        }
    }
}
