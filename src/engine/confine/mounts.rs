//! `-v/--volume`, `--tmpfs` and `--mount`, in docker's syntax, as OCI mounts.
//! Only host paths and tmpfs: rcon has no named volumes, so a volume name is
//! refused rather than made.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// One mount a flag asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMount {
    pub kind: Kind,
    /// The host path of a bind (empty for tmpfs).
    pub source: String,
    pub target: String,
    pub readonly: bool,
    /// tmpfs options beyond docker's defaults (size=…, mode=…, exec …).
    pub tmpfs_opts: Vec<String>,
    /// Which flag made it: `-v` (Binds), `--tmpfs` or `--mount` (Mounts).
    pub flag: Flag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Volume,
    Tmpfs,
    Mount,
}

/// The tmpfs options docker passes through (the rest would fail in the
/// container's mount, long after the flag was read).
const TMPFS_OPTS: &[&str] = &[
    "ro",
    "rw",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "sync",
    "async",
];
const TMPFS_KEYS: &[&str] = &["size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"];

fn absolute_target(flag: &str, spec: &str, target: &str) -> Result<()> {
    if !target.starts_with('/') {
        bail!("{flag} {spec:?}: the container path {target:?} must be absolute");
    }
    if Path::new(target).components().count() < 2 {
        bail!("{flag} {spec:?}: cannot mount over the container's root");
    }
    Ok(())
}

/// A bind source must be an absolute path that exists (docker would make a
/// named volume, or create the directory; rcon does neither).
fn host_source(flag: &str, spec: &str, source: &str) -> Result<()> {
    if !source.starts_with('/') {
        bail!("{flag} {spec:?}: {source:?} is not an absolute host path, and rcon has no named volumes");
    }
    if std::fs::symlink_metadata(source).is_err() {
        bail!("{flag} {spec:?}: the host path {source} does not exist");
    }
    Ok(())
}

/// `-v HOST:CTR[:ro|rw]`.
pub fn volume(spec: &str) -> Result<UserMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, "rw"),
        [s, t, m] => (*s, *t, *m),
        _ => bail!("-v {spec:?}: use HOST:CTR[:ro|rw] (an absolute host path)"),
    };
    host_source("-v", spec, source)?;
    absolute_target("-v", spec, target)?;
    let readonly = match mode {
        "ro" => true,
        "rw" => false,
        m => bail!("-v {spec:?}: unknown mode {m:?} (ro or rw)"),
    };
    Ok(UserMount {
        kind: Kind::Bind,
        source: source.into(),
        target: target.into(),
        readonly,
        tmpfs_opts: vec![],
        flag: Flag::Volume,
    })
}

fn check_tmpfs_opt(flag: &str, spec: &str, o: &str) -> Result<()> {
    let ok = match o.split_once('=') {
        Some((k, v)) => TMPFS_KEYS.contains(&k) && !v.is_empty(),
        None => TMPFS_OPTS.contains(&o),
    };
    if !ok {
        bail!("{flag} {spec:?}: unknown tmpfs option {o:?}");
    }
    Ok(())
}

/// `--tmpfs PATH[:OPTS]`.
pub fn tmpfs(spec: &str) -> Result<UserMount> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    absolute_target("--tmpfs", spec, target)?;
    let opts: Vec<String> = opts.split(',').filter(|o| !o.is_empty()).map(String::from).collect();
    for o in &opts {
        check_tmpfs_opt("--tmpfs", spec, o)?;
    }
    let readonly = opts.iter().any(|o| o == "ro");
    let tmpfs_opts = opts.into_iter().filter(|o| o != "ro" && o != "rw").collect();
    Ok(UserMount {
        kind: Kind::Tmpfs,
        source: String::new(),
        target: target.into(),
        readonly,
        tmpfs_opts,
        flag: Flag::Tmpfs,
    })
}

/// `--mount type=bind|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`.
pub fn mount(spec: &str) -> Result<UserMount> {
    let (mut kind, mut source, mut target, mut readonly, mut opts) = (None, None, None, false, Vec::new());
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let val = || v.filter(|v| !v.is_empty()).with_context(|| format!("--mount {spec:?}: {k} needs a value"));
        match k {
            "type" => kind = Some(val()?),
            "source" | "src" => source = Some(val()?),
            "target" | "destination" | "dst" => target = Some(val()?),
            "readonly" | "ro" => {
                readonly = match v {
                    None | Some("1") | Some("true") => true,
                    Some("0") | Some("false") => false,
                    Some(x) => bail!("--mount {spec:?}: {k}={x:?} is not true or false"),
                }
            }
            "tmpfs-size" => opts.push(format!("size={}", super::units::bytes("--mount tmpfs-size", val()?)?)),
            "tmpfs-mode" => {
                let m = val()?;
                u32::from_str_radix(m, 8).with_context(|| format!("--mount {spec:?}: tmpfs-mode {m:?} is not octal"))?;
                opts.push(format!("mode={m}"));
            }
            _ => bail!("--mount {spec:?}: unknown key {k:?} (rcon knows type, source, target, readonly, tmpfs-size, tmpfs-mode)"),
        }
    }
    let target = target.with_context(|| format!("--mount {spec:?}: target is required"))?;
    absolute_target("--mount", spec, target)?;
    let kind = match kind {
        Some("bind") => Kind::Bind,
        Some("tmpfs") => Kind::Tmpfs,
        Some(t) => bail!("--mount {spec:?}: type {t:?} is not supported (bind or tmpfs)"),
        None => bail!("--mount {spec:?}: type is required (bind or tmpfs)"),
    };
    let source = match (kind, source) {
        (Kind::Bind, Some(s)) => {
            host_source("--mount", spec, s)?;
            s.to_string()
        }
        (Kind::Bind, None) => bail!("--mount {spec:?}: a bind needs a source"),
        (Kind::Tmpfs, Some(_)) => bail!("--mount {spec:?}: a tmpfs takes no source"),
        (Kind::Tmpfs, None) => String::new(),
    };
    if kind == Kind::Bind && !opts.is_empty() {
        bail!("--mount {spec:?}: tmpfs options on a bind mount");
    }
    Ok(UserMount { kind, source, target: target.into(), readonly, tmpfs_opts: opts, flag: Flag::Mount })
}

impl UserMount {
    /// The OCI mount: binds recursive and private as docker's; tmpfs with
    /// docker's noexec,nosuid,nodev, which the flag's own options override.
    pub fn oci(&self) -> Value {
        let ro = if self.readonly { "ro" } else { "rw" };
        match self.kind {
            Kind::Bind => json!({
                "destination": self.target, "type": "bind", "source": self.source,
                "options": ["rbind", "rprivate", ro],
            }),
            Kind::Tmpfs => json!({
                "destination": self.target, "type": "tmpfs", "source": "tmpfs",
                "options": tmpfs_options(&self.tmpfs_opts, ro),
            }),
        }
    }
}

/// Docker's defaults first, each dropped when the flag says its opposite.
fn tmpfs_options(user: &[String], ro: &str) -> Vec<String> {
    let opposite = |d: &str| match d {
        "noexec" => "exec",
        "nosuid" => "suid",
        _ => "dev",
    };
    let mut out: Vec<String> = ["noexec", "nosuid", "nodev"]
        .iter()
        .filter(|d| !user.iter().any(|u| u == opposite(d)))
        .map(|d| d.to_string())
        .collect();
    out.extend(user.iter().cloned());
    out.push(ro.into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_need_an_existing_absolute_host_path() {
        let m = volume("/tmp:/data:ro").unwrap();
        assert_eq!((m.kind, m.source.as_str(), m.target.as_str(), m.readonly), (Kind::Bind, "/tmp", "/data", true));
        assert_eq!(m.oci()["options"], json!(["rbind", "rprivate", "ro"]));
        assert!(!volume("/tmp:/data").unwrap().readonly);
        let e = volume("data:/data").unwrap_err().to_string();
        assert!(e.contains("not an absolute host path") && e.contains("named volumes"), "{e}");
        assert!(volume("/no/such/dir:/d").unwrap_err().to_string().contains("does not exist"));
        assert!(volume("/tmp:rel").unwrap_err().to_string().contains("must be absolute"));
        assert!(volume("/tmp:/d:rx").unwrap_err().to_string().contains("unknown mode"));
        assert!(volume("/tmp").unwrap_err().to_string().contains("HOST:CTR"));
        assert!(volume("/tmp:/").unwrap_err().to_string().contains("root"));
    }

    #[test]
    fn tmpfs_keeps_dockers_defaults_unless_overridden() {
        let m = tmpfs("/scratch").unwrap();
        assert_eq!(m.oci()["options"], json!(["noexec", "nosuid", "nodev", "rw"]));
        let m = tmpfs("/run:exec,size=64m,ro").unwrap();
        assert!(m.readonly);
        assert_eq!(m.oci()["options"], json!(["nosuid", "nodev", "exec", "size=64m", "ro"]));
        assert!(tmpfs("/x:bogus").unwrap_err().to_string().contains("unknown tmpfs option \"bogus\""));
        assert!(tmpfs("x").unwrap_err().to_string().contains("must be absolute"));
    }

    #[test]
    fn mount_in_dockers_syntax() {
        let m = mount("type=bind,source=/tmp,target=/t,readonly").unwrap();
        assert_eq!((m.kind, m.readonly, m.flag), (Kind::Bind, true, Flag::Mount));
        let m = mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777").unwrap();
        assert_eq!(m.tmpfs_opts, vec!["size=1048576", "mode=1777"]);
        let cases = [
            ("type=bind,source=/tmp,target=/t,color=red", "unknown key \"color\""),
            ("type=volume,source=v,target=/t", "type \"volume\" is not supported"),
            ("source=/tmp,target=/t", "type is required"),
            ("type=bind,target=/t", "a bind needs a source"),
            ("type=bind,source=/tmp", "target is required"),
            ("type=bind,source=/tmp,target=/t,readonly=maybe", "not true or false"),
            ("type=tmpfs,target=/t,tmpfs-mode=9x", "not octal"),
            ("type=bind,source=rel,target=/t", "not an absolute host path"),
        ];
        for (spec, want) in cases {
            let e = mount(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }
}
