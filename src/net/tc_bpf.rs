//! rcon's tc eBPF filters: loading a program of an embedded object, attaching
//! it to a link's clsact hook where it outlives rcon, and finding its maps
//! again later. Used by the eBPF IPIP plane (overlay::ipip_ebpf) and the
//! bridge shortcut (shortcut).

use anyhow::{bail, Context as _, Result};
use aya::maps::{Map, MapData, MapInfo};
use aya::programs::tc::{self, NlOptions, SchedClassifier, TcAttachOptions, TcError, TcHandle};
use aya::programs::{ProgramError, TcAttachType};
use aya::Ebpf;

/// The tc priority and handle of rcon's filters ("rc"): ours to find and delete.
const PRIORITY: u16 = 0x7263;
const HANDLE: TcHandle = TcHandle::new(0, 1);

/// Load program `prog` and attach it to `iface`'s clsact hook `at`, where
/// it stays after `ebpf` is dropped (its filter holds it).
pub fn attach(ebpf: &mut Ebpf, prog: &str, iface: &str, at: TcAttachType) -> Result<()> {
    let p: &mut SchedClassifier =
        ebpf.program_mut(prog).with_context(|| format!("the object has no program {prog}"))?.try_into()?;
    p.load().map_err(|e| load_error(prog, e))?;
    match tc::qdisc_add_clsact(iface) {
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(TcError::AlreadyAttached) | Ok(()) => {}
        Err(e) => return Err(e).with_context(|| format!("adding a clsact qdisc to {iface}")),
    }
    // Netlink, not a TCX link: a TCX link dies with its descriptor unless
    // pinned, and kernels before 6.6 (Debian 12's) have none.
    let opts = NlOptions { priority: PRIORITY, handle: HANDLE, classid: None };
    let id = p
        .attach_with_options(iface, at, TcAttachOptions::Netlink(opts))
        .with_context(|| format!("attaching {prog} to {iface}"))?;
    let link = p.take_link(id)?;
    // Dropping the link would delete the filter; it is only the filter's
    // address (ifindex, priority, handle), so forgetting it leaks nothing.
    std::mem::forget(link);
    Ok(())
}

/// Remove the filters of program `prog` from `iface`'s hook `at`; none is fine.
pub fn detach(iface: &str, at: TcAttachType, prog: &str) -> Result<()> {
    match tc::qdisc_detach_program(iface, at, prog) {
        Err(TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.with_context(|| format!("detaching {prog} from {iface}")),
    }
}

/// A refused load in one line: the errno and the verifier's last words.
fn load_error(prog: &str, e: ProgramError) -> anyhow::Error {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).rev().take(2).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::anyhow!("loading {prog}: {io_error} (verifier: {})", tail.join("; "))
        }
        e => anyhow::anyhow!("loading {prog}: {e}"),
    }
}

/// The map called `name` among the maps `ids` (an attached program's).
pub fn map_named(ids: &[u32], name: &str) -> Result<Map> {
    for &id in ids {
        let info = MapInfo::from_id(id).with_context(|| format!("reading map {id}"))?;
        if info.name_as_str() == Some(name) {
            return Ok(Map::from_map_data(MapData::from_id(id)?)?);
        }
    }
    bail!("the program has no map {name}")
}
