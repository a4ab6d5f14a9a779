//! `linux.seccomp`: the config's filter, compiled by libseccomp (what runc,
//! crun and youki use, so a profile means the same under each) and loaded
//! just before execve, in the container's init and in every `exec`.
//!
//! As runc: a syscall name this libseccomp or architecture does not know is
//! skipped (no such call can be made), a rule whose action is the default is
//! skipped (libseccomp refuses it), and a rule with several conditions on one
//! argument becomes one rule per condition (libseccomp allows one per
//! argument). What rcon cannot do (a notify listener, an unknown flag) is
//! refused, never dropped.

use std::str::FromStr;

use anyhow::{bail, Context as _, Result};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

const FIELD: &str = "config.json: field linux.seccomp";

/// A compiled filter, loaded by `load` as late as possible.
pub struct Filter(ScmpFilterContext);

/// Compile the config's filter (None when the config has none).
pub fn compile(cfg: Option<&LinuxSeccomp>) -> Result<Option<Filter>> {
    let Some(cfg) = cfg else { return Ok(None) };
    if cfg.listener_path().is_some() {
        bail!("{FIELD}.listenerPath: rcon has no seccomp notify support");
    }
    let default =
        action(cfg.default_action(), cfg.default_errno_ret()).with_context(|| format!("{FIELD}.defaultAction"))?;
    let mut ctx = ScmpFilterContext::new(default).context("seccomp_init")?;
    // No-new-privileges is the config's own setting (process.noNewPrivileges).
    ctx.set_ctl_nnp(false)?;
    for (i, a) in cfg.architectures().as_deref().unwrap_or_default().iter().enumerate() {
        let name = serde_json::to_value(a)?.as_str().unwrap_or_default().to_string();
        let arch = ScmpArch::from_str(&name).with_context(|| format!("{FIELD}.architectures[{i}]: {name}"))?;
        // The native arch is in every new filter already.
        if arch != ScmpArch::native() {
            ctx.add_arch(arch).with_context(|| format!("{FIELD}.architectures[{i}]: {name}"))?;
        }
    }
    for f in cfg.flags().as_deref().unwrap_or_default() {
        let attr = match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ScmpFilterAttr::CtlLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ScmpFilterAttr::CtlTsync,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ScmpFilterAttr::CtlSsb,
            other => bail!("{FIELD}.flags: {other} is not supported by rcon"),
        };
        ctx.set_filter_attr(attr, 1).with_context(|| format!("{FIELD}.flags: {f}"))?;
    }
    for (i, rule) in cfg.syscalls().as_deref().unwrap_or_default().iter().enumerate() {
        let at = || format!("{FIELD}.syscalls[{i}]");
        let act = action(rule.action(), rule.errno_ret()).with_context(at)?;
        if act == default {
            continue;
        }
        let groups = conditions(rule.args().as_deref().unwrap_or_default());
        for name in rule.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            for conds in &groups {
                let added =
                    if conds.is_empty() { ctx.add_rule(act, nr) } else { ctx.add_rule_conditional(act, nr, conds) };
                added.with_context(|| format!("{}: {name}", at()))?;
            }
        }
    }
    Ok(Some(Filter(ctx)))
}

impl Filter {
    /// Load into this process (needs no_new_privs or CAP_SYS_ADMIN).
    pub fn load(&self) -> Result<()> {
        self.0.load().context("loading the seccomp filter (linux.seccomp)")
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => bail!("SCMP_ACT_NOTIFY: rcon has no seccomp notify support"),
    })
}

/// The rule's conditions, split into groups with each argument at most once:
/// one group when the indices are distinct, else one group per condition.
fn conditions(args: &[LinuxSeccompArg]) -> Vec<Vec<ScmpArgCompare>> {
    let cmp: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
    let mut seen = std::collections::HashSet::new();
    if args.iter().all(|a| seen.insert(a.index())) {
        vec![cmp]
    } else {
        cmp.into_iter().map(|c| vec![c]).collect()
    }
}

fn compare(a: &LinuxSeccompArg) -> ScmpArgCompare {
    let (op, datum) = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        // value is the mask, valueTwo what the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0)),
    };
    ScmpArgCompare::new(a.index() as u32, op, datum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_docker_like_profile_compiles() {
        let c = cfg(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "no_such_call_here"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            ]
        }));
        assert!(compile(Some(&c)).unwrap().is_some());
        assert!(compile(None).unwrap().is_none());
    }

    #[test]
    fn same_argument_twice_splits_into_rules() {
        let args: Vec<LinuxSeccompArg> = serde_json::from_value(serde_json::json!([
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}
        ]))
        .unwrap();
        assert_eq!(conditions(&args).len(), 2);
        assert_eq!(conditions(&args[..1]).len(), 1);
    }

    #[test]
    fn notify_is_refused_by_name() {
        let c = cfg(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}));
        let err = format!("{:#}", compile(Some(&c)).err().unwrap());
        assert!(err.contains("linux.seccomp.listenerPath"), "{err}");
        let c = cfg(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
        let err = format!("{:#}", compile(Some(&c)).err().unwrap());
        assert!(err.contains("syscalls[0]") && err.contains("NOTIFY"), "{err}");
    }
}
