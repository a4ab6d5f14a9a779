//! The last steps before execve in the container: find the executable,
//! then rlimits, ids, capabilities and no_new_privileges, in the order the
//! kernel requires (bounding set while we still hold CAP_SETPCAP, ids with
//! KEEPCAPS, then the capability sets, then ambient).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{access, AccessFlags, Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What execve needs, resolved up front so that a missing binary is
/// reported by `create`, not lost after `start`.
pub struct Exec {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

pub fn resolve(process: &Process) -> Result<Exec> {
    let args = process.args().as_deref().unwrap_or(&[]);
    let Some(cmd) = args.first() else { bail!("config.json: field process.args: must name a command") };
    let env = process.env().as_deref().unwrap_or(&[]);
    let search = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    let path = find_executable(cmd, search, Path::new(process.cwd()))?;
    let cstr = |s: &str| CString::new(s).with_context(|| format!("NUL byte in {s:?}"));
    Ok(Exec {
        path: CString::new(path.as_os_str().as_bytes())?,
        args: args.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
        env: env.iter().map(|e| cstr(e)).collect::<Result<_>>()?,
    })
}

fn find_executable(cmd: &str, search: &str, cwd: &Path) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = if cmd.contains('/') {
        vec![cwd.join(cmd)]
    } else {
        search.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(cmd)).collect()
    };
    for c in &candidates {
        if c.is_file() && access(c, AccessFlags::X_OK).is_ok() {
            return Ok(c.clone());
        }
    }
    bail!("executable {cmd:?} not found in the container (PATH={search})")
}

/// rlimits, oom score, ids, capabilities, no_new_privileges, seccomp.
pub fn apply(process: &Process, filter: Option<&super::seccomp::Filter>) -> Result<()> {
    let nnp = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
    // while rcon still has it (as runc); the calls below must then be allowed.
    if !nnp {
        filter.map(|f| f.load()).transpose()?;
    }
    for r in process.rlimits().as_deref().unwrap_or(&[]) {
        let res = rlimit_resource(r.typ());
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: setrlimit reads one `rlimit`, and `lim` is one, alive for the call.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            bail!("setrlimit {:?}: {}", r.typ(), std::io::Error::last_os_error());
        }
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).context("oom_score_adj")?;
    }
    let caps = process.capabilities().clone().unwrap_or_else(empty_caps);
    drop_bounding(&caps)?;
    set_ids(process)?;
    set_caps(&caps)?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().context("no_new_privileges")?;
        // As late as possible: only execve is left to allow.
        filter.map(|f| f.load()).transpose()?;
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn empty_caps() -> LinuxCapabilities {
    let none = || Some(Default::default());
    let mut c = LinuxCapabilities::default();
    c.set_bounding(none()).set_effective(none()).set_inheritable(none()).set_permitted(none()).set_ambient(none());
    c
}

/// oci-spec capability names are the kernel's `CAP_*` strings; so are caps'.
pub fn convert(set: Option<&oci_spec::runtime::Capabilities>) -> CapsHashSet {
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        match Capability::from_str(&name) {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => tracing::warn!(capability = %name, "unknown capability ignored"),
        }
    }
    out
}

fn drop_bounding(caps: &LinuxCapabilities) -> Result<()> {
    let keep = convert(caps.bounding().as_ref());
    let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    for cap in supported.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).with_context(|| format!("dropping {cap} from the bounding set"))?;
    }
    Ok(())
}

fn set_ids(process: &Process) -> Result<()> {
    let user = process.user();
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    let gids: Vec<Gid> = user.additional_gids().as_deref().unwrap_or(&[]).iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).context("setgroups")?;
    // Keep the permitted set across the uid change; the sets are set right after.
    nix::sys::prctl::set_keepcaps(true).context("PR_SET_KEEPCAPS")?;
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).with_context(|| format!("setgid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).with_context(|| format!("setuid {uid}"))?;
    nix::sys::prctl::set_keepcaps(false).context("PR_SET_KEEPCAPS")?;
    Ok(())
}

fn set_caps(caps: &LinuxCapabilities) -> Result<()> {
    let eff = convert(caps.effective().as_ref());
    let perm = convert(caps.permitted().as_ref());
    let inh = convert(caps.inheritable().as_ref());
    // Effective first: it must stay a subset of permitted as that shrinks.
    caps::set(None, CapSet::Effective, &eff.intersection(&perm).copied().collect())
        .context("setting effective capabilities")?;
    caps::set(None, CapSet::Inheritable, &inh).context("setting inheritable capabilities")?;
    caps::set(None, CapSet::Permitted, &perm).context("setting permitted capabilities")?;
    caps::set(None, CapSet::Effective, &eff).context("setting effective capabilities")?;
    caps::clear(None, CapSet::Ambient).ok();
    // `create` already warned about the ones left out (see `ambient_split`).
    for cap in ambient_split(caps).0 {
        caps::raise(None, CapSet::Ambient, cap).with_context(|| format!("raising ambient {cap}"))?;
    }
    Ok(())
}

/// The kernel raises an ambient capability only when it is also permitted and
/// inheritable (PR_CAP_AMBIENT_RAISE fails with EPERM otherwise). runc's own
/// `runc spec` lists ambient capabilities with no inheritable set (the fix for
/// CVE-2022-29162), so, as runc does, the others are skipped with a warning
/// rather than failing the container. Returns (raised, skipped), skipped sorted.
pub fn ambient_split(caps: &LinuxCapabilities) -> (Vec<Capability>, Vec<Capability>) {
    let perm = convert(caps.permitted().as_ref());
    let inh = convert(caps.inheritable().as_ref());
    let (mut raise, mut skip): (Vec<_>, Vec<_>) =
        convert(caps.ambient().as_ref()).into_iter().partition(|c| perm.contains(c) && inh.contains(c));
    raise.sort_by_key(|c| c.index());
    skip.sort_by_key(|c| c.index());
    (raise, skip)
}

/// The one warning line `create` prints for ambient capabilities it cannot raise.
pub fn ambient_warning(process: &Process) -> Option<String> {
    let skipped = ambient_split(process.capabilities().as_ref()?).1;
    if skipped.is_empty() {
        return None;
    }
    let names: Vec<String> = skipped.iter().map(|c| c.to_string()).collect();
    Some(format!(
        "config.json: process.capabilities.ambient: {} not raised: an ambient capability must also be permitted and inheritable",
        names.join(", ")
    ))
}

/// Reset what the container must not inherit from rcon, then execve.
pub fn exec(e: &Exec, keep_fds: i32) -> Result<std::convert::Infallible> {
    let empty = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&empty), None).ok();
    // Rust ignores SIGPIPE at startup; an ignored disposition survives execve.
    // SAFETY: SIG_DFL installs no handler of ours, so no code can run in a signal context.
    unsafe { nix::sys::signal::signal(nix::sys::signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) }.ok();
    for fd in 3..3 + keep_fds {
        // SAFETY: F_SETFD takes an integer, no pointer; it only clears FD_CLOEXEC on the fds passed on.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    // Everything rcon itself opened must not leak into the container.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC takes integers and closes nothing now: it only
    // marks our fds close-on-exec, and the execve below is next.
    unsafe { libc::syscall(libc::SYS_close_range, 3 + keep_fds, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    let err = nix::unistd::execve(&e.path, &e.args, &e.env).unwrap_err();
    bail!("exec {:?}: {err}", e.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: serde_json::Value) -> LinuxCapabilities {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ambient_needs_permitted_and_inheritable() {
        let c = caps(serde_json::json!({
            "permitted": ["CAP_KILL", "CAP_NET_RAW", "CAP_CHOWN"],
            "inheritable": ["CAP_KILL", "CAP_CHOWN"],
            "ambient": ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_ADMIN"],
        }));
        let (raise, skip) = ambient_split(&c);
        assert_eq!(raise, vec![Capability::CAP_KILL]);
        assert_eq!(skip, vec![Capability::CAP_NET_RAW, Capability::CAP_SYS_ADMIN]);
    }

    #[test]
    fn one_warning_names_every_skipped_capability() {
        let mut p = Process::default();
        let mut c = p.capabilities().clone().unwrap();
        c.set_inheritable(None);
        p.set_capabilities(Some(c.clone()));
        assert!(ambient_warning(&p).is_some_and(|w| w.contains("CAP_KILL") && w.contains("CAP_AUDIT_WRITE")));
        c.set_ambient(None);
        p.set_capabilities(Some(c));
        assert_eq!(ambient_warning(&p), None);
    }
}
