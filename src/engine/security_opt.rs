//! `rcon run --security-opt`: which seccomp filter the container gets
//! (rcon's default profile, none, or a profile file) and no-new-privileges.
//! Docker's spellings are accepted; anything else is one clear error.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::Capability;
use serde_json::{json, Value};

use super::{seccomp_file, seccomp_profile};

/// Annotations that record the choice for `inspect`.
pub const SECCOMP: &str = "rcon.seccomp";
pub const NO_NEW_PRIVILEGES: &str = "rcon.no-new-privileges";

const KNOWN: &str = "known: seccomp=unconfined, seccomp=FILE, no-new-privileges[=true|false]";

#[derive(Debug, Clone, Default)]
pub enum Seccomp {
    /// rcon's own profile (engine/seccomp_profile.rs).
    #[default]
    Default,
    Unconfined,
    File(PathBuf, seccomp_file::Profile),
}

#[derive(Debug, Clone, Default)]
pub struct SecurityOpts {
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
}

impl SecurityOpts {
    /// The `--security-opt` values, in order (a later one wins). A profile
    /// file is read now, so a bad one is refused before anything is made.
    pub fn parse(opts: &[String]) -> Result<SecurityOpts> {
        let mut out = SecurityOpts::default();
        for o in opts {
            let at = || format!("--security-opt {o}");
            // Docker also takes the old `key:value` form.
            let (key, value) = match o.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (o.as_str(), None),
            };
            match (key, value) {
                ("seccomp", Some("unconfined")) => out.seccomp = Seccomp::Unconfined,
                ("seccomp", Some("")) | ("seccomp", None) => bail!("{}: give unconfined or a profile FILE", at()),
                ("seccomp", Some(file)) => {
                    let path = std::path::absolute(file).with_context(at)?;
                    let p = seccomp_file::read(&path).with_context(at)?;
                    out.seccomp = Seccomp::File(path, p);
                }
                ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
                ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
                ("no-new-privileges", Some(v)) => bail!("{}: {v:?} is not true or false", at()),
                (k, _) => bail!("{}: unknown option {k:?} ({KNOWN})", at()),
            }
        }
        Ok(out)
    }

    fn describe_seccomp(&self) -> String {
        match &self.seccomp {
            Seccomp::Default => "default".into(),
            Seccomp::Unconfined => "unconfined".into(),
            Seccomp::File(p, _) => p.display().to_string(),
        }
    }
}

/// Put the filter and no-new-privileges into a config being built. Called
/// once the capabilities are final: the filter follows the bounding set.
pub fn apply(v: &mut Value, o: &SecurityOpts, privileged: bool) -> Result<()> {
    let caps: Vec<Capability> =
        serde_json::from_value(v["process"]["capabilities"]["bounding"].clone()).unwrap_or_default();
    let filter = match &o.seccomp {
        // As Docker: --privileged runs without the default profile (a file still applies).
        Seccomp::Default if privileged => None,
        Seccomp::Default => Some(seccomp_profile::profile(&caps)),
        Seccomp::Unconfined => None,
        Seccomp::File(path, p) => {
            let at = || format!("--security-opt seccomp={}", path.display());
            let f = p.to_oci(&seccomp_file::Target::here(&caps)?).with_context(at)?;
            // Compiled once here too, so a filter libseccomp refuses stops the run before create.
            crate::runtime::seccomp::compile(Some(&f)).with_context(at)?;
            Some(f)
        }
    };
    match filter {
        Some(f) => v["linux"]["seccomp"] = serde_json::to_value(f)?,
        None => {
            if let Some(l) = v["linux"].as_object_mut() {
                l.remove("seccomp");
            }
        }
    }
    v["process"]["noNewPrivileges"] = json!(o.no_new_privileges);
    if !v["annotations"].is_object() {
        v["annotations"] = json!({});
    }
    let mode = match (&o.seccomp, privileged) {
        (Seccomp::Default, true) => "unconfined (--privileged)".to_string(),
        _ => o.describe_seccomp(),
    };
    v["annotations"][SECCOMP] = json!(mode);
    v["annotations"][NO_NEW_PRIVILEGES] = json!(o.no_new_privileges.to_string());
    Ok(())
}

/// What `inspect` shows: the seccomp mode (default, unconfined or the
/// profile's path) and no-new-privileges. Absent for bundles run by id.
pub fn describe(annotations: &HashMap<String, String>) -> Value {
    json!({
        "seccomp": annotations.get(SECCOMP),
        "no_new_privileges": annotations.get(NO_NEW_PRIVILEGES).map(|v| v == "true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Result<SecurityOpts> {
        SecurityOpts::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn docker_spellings() {
        assert!(matches!(parse(&[]).unwrap().seccomp, Seccomp::Default));
        assert!(matches!(parse(&["seccomp=unconfined"]).unwrap().seccomp, Seccomp::Unconfined));
        assert!(matches!(parse(&["seccomp:unconfined"]).unwrap().seccomp, Seccomp::Unconfined));
        for on in ["no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"] {
            assert!(parse(&[on]).unwrap().no_new_privileges, "{on}");
        }
        assert!(!parse(&["no-new-privileges", "no-new-privileges:false"]).unwrap().no_new_privileges);
    }

    #[test]
    fn bad_options_name_the_cause() {
        let err = |o: &str| format!("{:#}", parse(&[o]).unwrap_err());
        assert!(err("apparmor=x").contains("unknown option \"apparmor\""));
        assert!(err("apparmor=x").contains("seccomp=unconfined"));
        assert!(err("no-new-privileges=yes").contains("not true or false"));
        assert!(err("seccomp=").contains("unconfined or a profile FILE"));
        let e = err("seccomp=/nonexistent/p.json");
        assert!(e.starts_with("--security-opt seccomp=/nonexistent/p.json: reading"), "{e}");
    }

    fn applied(o: &SecurityOpts, caps: &[&str]) -> Value {
        let mut v = json!({"process": {"capabilities": {"bounding": caps}}, "linux": {}, "annotations": {}});
        apply(&mut v, o, false).unwrap();
        v
    }

    #[test]
    fn the_filter_follows_the_bounding_set() {
        let allows_mount =
            |v: &Value| {
                v["linux"]["seccomp"]["syscalls"].as_array().unwrap().iter().any(|r| {
                    r["action"] == "SCMP_ACT_ALLOW" && r["names"].as_array().unwrap().iter().any(|n| n == "mount")
                })
            };
        let v = applied(&SecurityOpts::default(), &["CAP_CHOWN"]);
        assert!(!allows_mount(&v));
        assert_eq!(v["annotations"][SECCOMP], "default");
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert!(allows_mount(&applied(&SecurityOpts::default(), &["CAP_SYS_ADMIN"])));
        let o = SecurityOpts { seccomp: Seccomp::Unconfined, no_new_privileges: true };
        let v = applied(&o, &[]);
        assert!(v["linux"].get("seccomp").is_none());
        assert_eq!(v["process"]["noNewPrivileges"], true);
        let ann: HashMap<String, String> = serde_json::from_value(v["annotations"].clone()).unwrap();
        assert_eq!(describe(&ann), json!({"seccomp": "unconfined", "no_new_privileges": true}));
    }
}
