//! The container's init before it becomes the user's process: it builds the
//! filesystem view, lets rcon run the runtime hooks, waits on the start
//! socket, then execs. Errors travel back over the sync channel.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::hooks::{self, Kind};
use super::sync::{Channel, Msg};
use super::{console, process, rootfs, seccomp, spec};

/// Everything the init needs, prepared by rcon before the fork.
pub struct InitConfig {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub console: Option<UnixStream>,
    /// Where `rcon start` connects; none when rcon sends `Start` over the
    /// channel instead (`run`).
    pub start: Option<UnixListener>,
}

pub fn run(cfg: InitConfig, chan: &mut Channel) -> Result<Infallible> {
    nix::unistd::setsid().context("setsid")?;
    let spec = &cfg.spec;
    if spec::creates_namespace(spec, LinuxNamespaceType::Network) {
        crate::sys::iface::loopback_up()?;
    }
    rootfs::prepare(spec, &cfg.rootfs)?;
    apply_sysctls(spec)?;
    if spec::creates_namespace(spec, LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).context("config.json: field hostname")?;
        }
        if let Some(d) = spec.domainname() {
            set_domainname(d)?;
        }
    }
    chan.send(&Msg::Hooks)?;
    let state = match chan.expect("runtime hooks")? {
        Msg::HooksDone { state } => state,
        other => bail!("unexpected {other:?}"),
    };
    hooks::run(spec, Kind::CreateContainer, &state)?;
    rootfs::enter(spec, &cfg.rootfs, cfg.no_pivot)?;
    rootfs::finish(spec)?;
    // Without `process` the container is created all the same; start refuses.
    let ready = spec.process().as_ref().map(|p| prepare_process(p, cfg.console.as_ref())).transpose()?;
    // Compiled now, so that a bad filter fails `create`; loaded at start.
    let filter = seccomp::compile(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    drop(cfg.console);
    chan.send(&Msg::Created)?;

    // An error after this point goes back on the start connection, or, when
    // started over the channel, on the channel (launch sends what we return).
    let mut conn = match &cfg.start {
        Some(listener) => Some(wait_for_start(listener)?),
        None => match chan.expect("start")? {
            Msg::Start => None,
            other => bail!("unexpected {other:?}"),
        },
    };
    drop(cfg.start);
    let result = (|| -> Result<Infallible> {
        let Some((proc_, exec)) = ready else {
            bail!("config.json has no process: there is nothing to start");
        };
        hooks::run(spec, Kind::StartContainer, &with_status(&state, "created"))?;
        process::apply(proc_, filter.as_ref())?;
        process::exec(&exec, cfg.preserve_fds as i32)
    })();
    let err = result.unwrap_err();
    if let Some(conn) = &mut conn {
        let _ = conn.write_all(format!("{err:#}").as_bytes());
    }
    Err(err)
}

/// The console, the executable and the cwd: what must be right before
/// `create` reports success.
fn prepare_process<'a>(
    proc_: &'a oci_spec::runtime::Process,
    console: Option<&UnixStream>,
) -> Result<(&'a oci_spec::runtime::Process, process::Exec)> {
    if let Some(console) = console {
        let size = proc_.console_size().map(|b| (b.height() as u16, b.width() as u16));
        console::setup(console, size)?;
    }
    let exec = process::resolve(proc_)?;
    nix::unistd::chdir(proc_.cwd().as_path())
        .with_context(|| format!("config.json: field process.cwd ({})", proc_.cwd().display()))?;
    Ok((proc_, exec))
}

/// Block until `rcon start` connects and sends its byte (runc's exec fifo).
fn wait_for_start(listener: &UnixListener) -> Result<UnixStream> {
    loop {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let mut b = [0u8; 1];
                if conn.read(&mut b).unwrap_or(0) == 1 {
                    return Ok(conn);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("waiting for start"),
        }
    }
}

/// net.* lands in the container's own netns because /proc/sys/net follows the
/// namespace of the process that opens it.
fn apply_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (k, v) in sysctl {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).with_context(|| format!("config.json: field linux.sysctl.{k}"))?;
    }
    Ok(())
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: the kernel reads exactly `name.len()` bytes (no NUL needed) from `name`, alive for the call.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("config.json: field domainname");
    }
    Ok(())
}

/// The state JSON with another status (hooks see the status of their stage).
fn with_status(state: &str, status: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = status.into();
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}
