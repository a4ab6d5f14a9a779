//! `linux.resources.devices` on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE
//! program attached to the container's v2 cgroup, as runc and crun do.
//!
//! The rule list is devices.rs's (the config's rules in order, then the
//! always-allowed /dev nodes and `linux.devices`). It is first replayed the
//! way the v1 devices controller takes writes ([`Policy`]), so that both
//! paths grant exactly the same: an "a" rule resets the list and sets the
//! default (allow or deny); later rules add exceptions to that default or
//! take them away. The program then checks the exceptions, all of one
//! verdict, and falls back to the default. Like the kernel, a request must
//! fit inside one allow exception, and is denied by any deny exception it
//! touches (open for read and write against a write-only deny).
//!
//! The program dies with the cgroup dir (rmdir detaches it), so nothing about
//! it is recorded in the container's state.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::devices;
use crate::sys::bpf::{self, Insn};

/// The testing knob: `bpf` uses the program even beside a v1 devices controller.
pub const ENV: &str = "RCON_CGROUP_DEVICES";

const FIELD: &str = "config.json: field linux.resources.devices";

/// The access bits, as the kernel hands them to the program (BPF_DEVCG_ACC_*).
const MKNOD: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;
/// The device types, likewise (BPF_DEVCG_DEV_*).
const BLOCK: i32 = 1;
const CHAR: i32 = 2;

/// Which devices a rule or exception is about; None is "any" (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Meta {
    /// 'b' or 'c'.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// One line of the list: an allow or deny write, or None for "a" (all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub meta: Option<Meta>,
    pub access: u8,
}

/// A rule from devices.rs's form, `TYPE MAJOR:MINOR ACCESS`.
pub fn parse(allow: bool, line: &str) -> Result<Rule> {
    let mut f = line.split(' ');
    let (kind, nums, acc) = (f.next().unwrap_or(""), f.next().unwrap_or("*:*"), f.next().unwrap_or("rwm"));
    let num = |s: &str| -> Result<Option<u32>> {
        if s == "*" {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{FIELD}: device number {s} is out of range (0 to {})", u32::MAX))
    };
    let (major, minor) = nums.split_once(':').unwrap_or((nums, "*"));
    let mut access = 0;
    for c in acc.chars() {
        access |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => bail!("{FIELD}: access {acc:?} has {c:?}: only r, w and m are allowed"),
        };
    }
    let meta = match kind {
        "a" => None,
        "b" | "c" => Some(Meta { kind: kind.chars().next().unwrap_or('c'), major: num(major)?, minor: num(minor)? }),
        other => bail!("{FIELD}: type {other:?} has no cgroup rule: use a, b, c or u"),
    };
    Ok(Rule { allow, meta, access })
}

/// What the v1 devices controller would hold after the same writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default_allow: bool,
    /// Exceptions to the default, each with its access bits.
    pub exceptions: BTreeMap<Meta, u8>,
}

impl Default for Policy {
    /// A new v1 group inherits "allow all" from the root.
    fn default() -> Policy {
        Policy { default_allow: true, exceptions: BTreeMap::new() }
    }
}

impl Policy {
    /// Replay the rules in order.
    pub fn of(rules: &[Rule]) -> Result<Policy> {
        let mut p = Policy::default();
        for r in rules {
            p.apply(r)?;
        }
        Ok(p)
    }

    fn apply(&mut self, r: &Rule) -> Result<()> {
        let Some(meta) = r.meta else {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return Ok(());
        };
        if r.allow != self.default_allow {
            *self.exceptions.entry(meta).or_default() |= r.access;
            return Ok(());
        }
        // The kernel only takes access away from the exact exception and
        // silently keeps a wider one that covers it; refuse that, as runc
        // does, rather than leave the user believing the hole is punched.
        for wider in
            [Meta { major: None, ..meta }, Meta { minor: None, ..meta }, Meta { major: None, minor: None, ..meta }]
        {
            let bits = self.exceptions.get(&wider).copied().unwrap_or(0);
            if wider != meta && bits & r.access != 0 {
                bail!(
                    "{FIELD}: {} {} cannot be cut out of the wider {} {}: the devices controller ignores such a rule",
                    if r.allow { "allowing" } else { "denying" },
                    show(&meta, r.access),
                    if r.allow { "deny" } else { "allow" },
                    show(&wider, bits)
                );
            }
        }
        if let Some(bits) = self.exceptions.get_mut(&meta) {
            *bits &= !r.access;
            if *bits == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// Whether the kernel's v1 check lets `access` (bits) on the device
    /// through: the reference the program is tested against.
    #[cfg(test)]
    pub fn allows(&self, kind: char, major: u32, minor: u32, access: u8) -> bool {
        let hits =
            |m: &Meta| m.kind == kind && m.major.is_none_or(|x| x == major) && m.minor.is_none_or(|x| x == minor);
        let mut matching = self.exceptions.iter().filter(|(m, _)| hits(m));
        if self.default_allow {
            !matching.any(|(_, bits)| bits & access != 0)
        } else {
            matching.any(|(_, bits)| access & !bits == 0)
        }
    }
}

/// `c 1:3 rw` for messages.
fn show(m: &Meta, access: u8) -> String {
    let n = |x: Option<u32>| x.map_or("*".to_string(), |x| x.to_string());
    let acc: String =
        [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')].iter().filter(|(b, _)| access & b != 0).map(|(_, c)| c).collect();
    format!("{} {}:{} {acc}", m.kind, n(m.major), n(m.minor))
}

/// The program for a policy: load the context, test each exception in
/// turn (all carry the verdict opposite to the default), then the default.
pub fn program(p: &Policy) -> Vec<Insn> {
    use asm::*;
    // r2 = type, r3 = access bits, r4 = major, r5 = minor.
    let mut out = vec![ldx_w(2, 1, 0), mov_reg(3, 2), rsh(3, 16), and(2, 0xffff), ldx_w(4, 1, 4), ldx_w(5, 1, 8)];
    let verdict = i32::from(!p.default_allow);
    for (m, &bits) in &p.exceptions {
        // Each test jumps past the rest of the block when it fails.
        let mut tests: Vec<(u8, u8, i32)> = vec![(JNE32, 2, if m.kind == 'b' { BLOCK } else { CHAR })];
        tests.extend(m.major.map(|x| (JNE32, 4, x as i32)));
        tests.extend(m.minor.map(|x| (JNE32, 5, x as i32)));
        // r1 = access & mask: an allow needs none outside its bits, a deny
        // needs one of its bits.
        let (mask, skip) = if p.default_allow { (bits, JEQ32) } else { (!bits & 7, JNE32) };
        let len = tests.len() + 4;
        let mut block: Vec<Insn> = Vec::with_capacity(len);
        for (op, reg, imm) in tests {
            block.push(jmp_imm(op, reg, imm, 0));
        }
        block.extend([mov_reg(1, 3), and(1, i32::from(mask)), jmp_imm(skip, 1, 0, 0)]);
        block.extend([mov_imm(0, verdict), exit()]);
        // Fill in the jumps: to just past this block's exit.
        let n = block.len();
        for (i, insn) in block.iter_mut().enumerate().filter(|(_, i)| is_jump(i)) {
            insn.off = (n - i - 1) as i16;
        }
        out.extend(block);
    }
    out.extend([mov_imm(0, i32::from(p.default_allow)), exit()]);
    out
}

/// The few instructions the program uses (eBPF's encoding).
mod asm {
    use super::Insn;

    pub const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    pub const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
    pub const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    pub const RSH64_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
    pub const AND64_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
    /// 32-bit compares: a major above i32::MAX still compares as the u32 it is.
    pub const JNE32: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
    pub const JEQ32: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
    pub const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: dst | (src << 4), off, imm }
    }
    pub fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        insn(LDX_W, dst, src, off, 0)
    }
    pub fn mov_reg(dst: u8, src: u8) -> Insn {
        insn(MOV64_X, dst, src, 0, 0)
    }
    pub fn mov_imm(dst: u8, imm: i32) -> Insn {
        insn(MOV64_K, dst, 0, 0, imm)
    }
    pub fn rsh(dst: u8, imm: i32) -> Insn {
        insn(RSH64_K, dst, 0, 0, imm)
    }
    pub fn and(dst: u8, imm: i32) -> Insn {
        insn(AND64_K, dst, 0, 0, imm)
    }
    pub fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        insn(op, dst, 0, off, imm)
    }
    pub fn exit() -> Insn {
        insn(EXIT, 0, 0, 0, 0)
    }
    pub fn is_jump(i: &Insn) -> bool {
        i.code == JNE32 || i.code == JEQ32
    }
}

/// The config's device list as rules, in devices.rs's order.
pub fn rules(spec: &Spec) -> Result<Vec<Rule>> {
    if let Some(i) = devices::rules(spec).unwrap_or_default().iter().position(|r| r.typ() == Some(LinuxDeviceType::P)) {
        bail!("{FIELD}[{i}]: type p (a FIFO) has no cgroup rule: use a, b, c or u");
    }
    devices::writes(spec).iter().map(|(file, line)| parse(*file == "devices.allow", line)).collect()
}

/// The annotation by which a config asks for the program even beside a v1
/// devices controller (when cgroup2 is there). `rcon run` sets it: joining
/// a v1 group is a cgroup migration, about 15 ms on these hosts, while the
/// program rides on the cgroup2 dir the init is cloned straight into.
pub const PREFER_BPF: &str = "rcon.cgroup-devices";

/// What `create` does with the config's device rules besides v1.
#[derive(Debug)]
pub struct Program(Vec<Insn>);

/// Check the device rules (both paths refuse the same bad lists) and say
/// whether the container's v2 cgroup `cgroup2` gets a device program: when
/// there are rules, and the host has no v1 devices controller or
/// RCON_CGROUP_DEVICES=bpf asks for the program.
pub fn plan(spec: &Spec, cgroup2: Option<&Path>) -> Result<Option<Program>> {
    if devices::rules(spec).is_none() {
        return Ok(None);
    }
    let policy = Policy::of(&rules(spec)?)?;
    let forced = match std::env::var(ENV).unwrap_or_default().as_str() {
        "" => false,
        "bpf" => true,
        other => bail!("{ENV}={other:?}: the only value is \"bpf\" (a testing knob)"),
    };
    let preferred =
        cgroup2.is_some() && spec.annotations().as_ref().and_then(|a| a.get(PREFER_BPF)).is_some_and(|v| v == "bpf");
    if !forced && !preferred && super::cgroup_v1::controller("devices").is_some() {
        return Ok(None);
    }
    if cgroup2.is_none() {
        bail!("{FIELD}: a BPF device program needs cgroup2, which this host has not mounted");
    }
    Ok(Some(Program(program(&policy))))
}

impl Program {
    /// Load the program and attach it to cgroup `dir` (before any process
    /// is in it), replacing a program a crashed create left on a reused dir.
    pub fn attach(&self, dir: &Path) -> Result<()> {
        let what = || format!("{FIELD}: attaching the device program to {}", dir.display());
        let fd = File::open(dir).with_context(what)?;
        let stale = bpf::device_prog_ids(&fd).with_context(what)?;
        let prog = bpf::load_device_prog(&self.0, "rcon_devices").map_err(anyhow::Error::from).context(FIELD)?;
        bpf::attach_device_prog(&fd, &prog).with_context(what)?;
        for id in stale {
            bpf::detach_device_prog(&fd, id).with_context(what)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
