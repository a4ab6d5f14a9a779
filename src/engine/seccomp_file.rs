//! A seccomp profile file for `--security-opt seccomp=FILE`: Docker's JSON
//! format, of which an OCI `linux.seccomp` object is a subset.
//!
//! Docker's extras are resolved here, for this container: `archMap` keeps
//! the entry of this machine's architecture, and a rule's `includes` and
//! `excludes` (caps, arches, minKernel) decide whether it applies. What has
//! no OCI meaning, or what rcon cannot do (a notify listener), is refused by
//! name, never dropped.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::{Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<Value>>,
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Vec<Value>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// Docker's older one-name form.
    name: Option<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    /// A note for people: accepted, not used.
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    caps: Vec<Capability>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// What the rule filters are matched against.
pub struct Target<'a> {
    pub caps: &'a [Capability],
    /// Go's name for the architecture, as Docker's `arches` use (amd64, arm64).
    pub arch: &'a str,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target<'_> {
    /// This machine, for a container holding `caps`.
    pub fn here(caps: &[Capability]) -> Result<Target<'_>> {
        let release = nix::sys::utsname::uname()?.release().to_string_lossy().into_owned();
        let kernel = parse_kernel(&release).with_context(|| format!("kernel release {release:?}"))?;
        Ok(Target { caps, arch: go_arch(), kernel })
    }
}

/// Read and check a profile file (JSON errors carry their line and column).
pub fn read(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let p: Profile =
        serde_json::from_str(&text).with_context(|| format!("{}: not a seccomp profile", path.display()))?;
    if p.listener_path.is_some() || p.listener_metadata.is_some() {
        bail!("{}: listenerPath: rcon has no seccomp notify support", path.display());
    }
    if p.architectures.is_some() && p.arch_map.is_some() {
        bail!("{}: give either architectures or archMap, not both", path.display());
    }
    for (i, r) in p.syscalls.iter().enumerate() {
        if r.action == LinuxSeccompAction::ScmpActNotify {
            bail!("{}: syscalls[{i}]: SCMP_ACT_NOTIFY: rcon has no seccomp notify support", path.display());
        }
        if r.names.is_empty() && r.name.is_none() {
            bail!("{}: syscalls[{i}]: names is empty", path.display());
        }
    }
    Ok(p)
}

impl Profile {
    /// The OCI filter for a container on `t`.
    pub fn to_oci(&self, t: &Target) -> Result<LinuxSeccomp> {
        let arches = match (&self.architectures, &self.arch_map) {
            (Some(a), _) => a.clone(),
            (None, Some(map)) => {
                let native = seccomp_arch();
                map.iter()
                    .filter(|m| m.architecture == native)
                    .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures))
                    .map(|a| json!(a))
                    .collect()
            }
            (None, None) => vec![],
        };
        let mut rules = Vec::new();
        for r in self.syscalls.iter().filter(|r| applies(r, t)) {
            let names: Vec<&String> = r.names.iter().chain(&r.name).collect();
            rules.push(json!({"names": names, "action": r.action, "errnoRet": r.errno_ret, "args": r.args}));
        }
        let v = json!({
            "defaultAction": self.default_action, "defaultErrnoRet": self.default_errno_ret,
            "architectures": arches, "flags": self.flags, "syscalls": rules,
        });
        serde_json::from_value(strip_nulls(v)).context("not a valid OCI seccomp filter")
    }
}

/// Docker's rule: every included cap held, the arch listed, the kernel new
/// enough; and no excluded cap held, the arch not excluded, the kernel older.
fn applies(r: &Rule, t: &Target) -> bool {
    let inc = &r.includes;
    let exc = &r.excludes;
    let kernel_ok = |min: &Option<String>| min.as_deref().and_then(parse_kernel).map(|m| t.kernel >= m);
    inc.caps.iter().all(|c| t.caps.contains(c))
        && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == t.arch))
        && kernel_ok(&inc.min_kernel).unwrap_or(true)
        && !exc.caps.iter().any(|c| t.caps.contains(c))
        && !exc.arches.iter().any(|a| a == t.arch)
        && !kernel_ok(&exc.min_kernel).unwrap_or(false)
}

/// "6.1.0-18-amd64" → (6, 1).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn seccomp_arch() -> String {
    let a = match std::env::consts::ARCH {
        "x86_64" => "X86_64",
        "aarch64" => "AARCH64",
        "x86" => "X86",
        "powerpc64" => "PPC64LE",
        other => other,
    };
    format!("SCMP_ARCH_{}", a.to_uppercase())
}

/// Optional fields left out rather than sent as null (oci-spec wants them absent).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: Value) -> Result<Profile> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.json");
        std::fs::write(&p, v.to_string()).unwrap();
        read(&p)
    }

    fn target(caps: &[Capability]) -> Target<'_> {
        Target { caps, arch: "amd64", kernel: (6, 1) }
    }

    fn names_of(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls().as_deref().unwrap_or_default().iter().flat_map(|r| r.names().clone()).collect()
    }

    #[test]
    fn docker_profile_resolves_caps_arches_and_kernels() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "", "includes": {}, "excludes": {}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
                {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.0"}},
            ]
        }))
        .unwrap();
        let s = p.to_oci(&target(&[])).unwrap();
        assert_eq!(names_of(&s), vec!["read", "write", "clone", "ptrace"]);
        let arches = serde_json::to_value(s.architectures()).unwrap();
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(arches, json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        }
        let s = p.to_oci(&target(&[Capability::SysAdmin])).unwrap();
        assert_eq!(names_of(&s), vec!["read", "write", "mount", "ptrace"]);
        assert!(crate::runtime::seccomp::compile(Some(&s)).unwrap().is_some());
    }

    #[test]
    fn an_oci_seccomp_object_is_a_profile_too() {
        let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
        .unwrap();
        let s = p.to_oci(&target(&[])).unwrap();
        assert_eq!(s.syscalls().as_ref().unwrap()[0].errno_ret(), Some(1));
    }

    #[test]
    fn what_rcon_cannot_do_is_refused_by_name() {
        let err = |v: Value| format!("{:#}", profile(v).unwrap_err());
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/s.sock"}));
        assert!(e.contains("listenerPath"), "{e}");
        let e = err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        assert!(e.contains("syscalls[0]") && e.contains("NOTIFY"), "{e}");
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}));
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err(json!({"defaultAction": "SCMP_ACT_NOPE"}));
        assert!(e.contains("not a seccomp profile"), "{e}");
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [], "archMap": []}));
        assert!(e.contains("either architectures or archMap"), "{e}");
        let e = format!("{:#}", read(Path::new("/nonexistent/p.json")).unwrap_err());
        assert!(e.contains("reading /nonexistent/p.json") && e.contains("No such file"), "{e}");
    }

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("x"), None);
    }
}
