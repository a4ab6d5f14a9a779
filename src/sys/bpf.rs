//! The bpf(2) calls a cgroup device program needs: load one, attach it to a
//! cgroup v2 directory, and find and detach the ones already there. Raw
//! instructions go in; what they mean is the caller's (runtime/device_prog.rs).
//! Also the ids of the maps a loaded program uses (the eBPF IPIP plane finds
//! its maps through the program its tc filter holds).
//!
//! Hand-encoded `bpf_attr` prefixes: the kernel takes an attr shorter than its
//! own union and reads the rest as zero, so each command passes only the
//! fields it uses.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One eBPF instruction, as `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Every program attached along the path must allow: a parent's (a pod's,
/// the host's) stays in force.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The license the program declares; it calls no GPL-only helper.
const LICENSE: &[u8] = b"Apache-2.0\0";
/// The verifier's log on a failed load: enough for a program of rule checks.
const LOG_SIZE: usize = 64 * 1024;

/// BPF_PROG_LOAD's part of `union bpf_attr`, up to expected_attach_type.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// BPF_PROG_ATTACH and BPF_PROG_DETACH's part.
#[repr(C)]
#[derive(Default)]
struct Attach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// BPF_PROG_QUERY's part.
#[repr(C)]
#[derive(Default)]
struct Query {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// BPF_PROG_GET_FD_BY_ID's part.
#[repr(C)]
#[derive(Default)]
struct GetFd {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// BPF_OBJ_GET_INFO_BY_FD's part.
#[repr(C)]
#[derive(Default)]
struct GetInfo {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to map_ids: the kernel fills only what fits.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
}

/// bpf(cmd, attr): the raw return value (an fd or 0), or the errno.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live #[repr(C)] prefix of `union bpf_attr` for `cmd`
    // and its size is passed with it; the kernel reads and writes only within
    // that size, and every pointer inside it points at memory alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// A descriptor bpf(2) just returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned this new descriptor (not negative) to us
    // alone; nothing else owns or closes it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Why a load failed: the errno, and the verifier's last lines when it spoke.
#[derive(Debug, thiserror::Error)]
#[error("loading the cgroup device program: {err}{}", if log.is_empty() { String::new() } else { format!(" (verifier: {log})") })]
pub struct LoadError {
    pub err: io::Error,
    pub log: String,
}

/// Load `insns` as a BPF_PROG_TYPE_CGROUP_DEVICE program named `name` (at
/// most 15 bytes). On failure the load is tried again with the verifier's
/// log on, so the error says why.
pub fn load_device_prog(insns: &[Insn], name: &str) -> Result<OwnedFd, LoadError> {
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let err = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let mut buf = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = buf.as_mut_ptr() as u64;
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        return Ok(owned(fd));
    }
    let text = String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
    // The end of the log says what the verifier refused; one line for the user.
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).rev().take(3).collect();
    let log = tail.into_iter().rev().collect::<Vec<_>>().join("; ");
    Err(LoadError { err, log })
}

/// The ids of the device programs attached to cgroup `dir` itself.
pub fn device_prog_ids(dir: &File) -> io::Result<Vec<u32>> {
    let mut attr = Query { target_fd: dir.as_raw_fd() as u32, attach_type: BPF_CGROUP_DEVICE, ..Default::default() };
    // A first call with no buffer returns the count.
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let mut ids = vec![0u32; attr.prog_cnt as usize];
    if ids.is_empty() {
        return Ok(ids);
    }
    attr.prog_ids = ids.as_mut_ptr() as u64;
    bpf(BPF_PROG_QUERY, &mut attr)?;
    // A program detached between the two calls shortens the list.
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// The ids of the maps that the program with id `id` uses.
pub fn prog_map_ids(id: u32) -> io::Result<Vec<u32>> {
    let mut get = GetFd { prog_id: id, ..Default::default() };
    let prog = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut get)?);
    let mut ids = vec![0u32; 64];
    let mut info = ProgInfo { nr_map_ids: ids.len() as u32, map_ids: ids.as_mut_ptr() as u64, ..Default::default() };
    let mut attr = GetInfo {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    ids.truncate((info.nr_map_ids as usize).min(ids.len()));
    Ok(ids)
}

/// Attach device program `prog` to cgroup `dir`, beside any others (ALLOW_MULTI).
pub fn attach_device_prog(dir: &File, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = Attach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detach the device program with id `id` from cgroup `dir`; one already
/// gone is done.
pub fn detach_device_prog(dir: &File, id: u32) -> io::Result<()> {
    let mut get = GetFd { prog_id: id, ..Default::default() };
    let prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
        Ok(fd) => owned(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut attr = Attach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    match bpf(BPF_PROG_DETACH, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(drop),
    }
}
