//! `--device`, the default cgroup device allowlist, and `--privileged`'s
//! host devices.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{json, Value};

/// One device node given to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host: String,
    pub ctr: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// The host node's permission bits.
    pub mode: u32,
    /// The cgroup access: some of r, w, m.
    pub access: String,
}

impl Device {
    pub fn oci(&self) -> Value {
        json!({
            "path": self.ctr, "type": self.kind.to_string(), "major": self.major, "minor": self.minor,
            "fileMode": self.mode, "uid": 0, "gid": 0,
        })
    }

    pub fn rule(&self) -> Value {
        json!({"allow": true, "type": self.kind.to_string(), "major": self.major, "minor": self.minor, "access": self.access})
    }
}

/// Docker's device access string: some of r, w and m, each once.
fn is_access(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| "rwm".contains(c)) && {
        let mut v: Vec<char> = s.chars().collect();
        v.sort_unstable();
        v.dedup();
        v.len() == s.len()
    }
}

/// `--device HOST[:CTR[:rwm]]` (`HOST:rwm` too, as docker reads two fields).
pub fn parse(spec: &str) -> Result<Device> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, a] if is_access(a) => (*h, *h, *a),
        [h, c] => (*h, *c, "rwm"),
        [h, c, a] => (*h, *c, *a),
        _ => bail!("--device {spec:?}: use HOST[:CTR[:rwm]]"),
    };
    if !is_access(access) {
        bail!("--device {spec:?}: access {access:?} must be some of r, w and m");
    }
    if !host.starts_with('/') || !ctr.starts_with('/') {
        bail!("--device {spec:?}: both paths must be absolute");
    }
    let (kind, major, minor, mode) =
        stat(Path::new(host)).map_err(|why| anyhow::anyhow!("--device {spec:?}: {host} {why}"))?;
    Ok(Device { host: host.into(), ctr: ctr.into(), kind, major, minor, mode, access: access.into() })
}

/// The type, numbers and permissions of a device node (following a symlink
/// as docker does), or why it is not one.
fn stat(p: &Path) -> Result<(char, u64, u64, u32), String> {
    let m = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => format!("cannot be read: {e}"),
    })?;
    let ft = m.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err("is not a device node".into());
    };
    let rdev = m.rdev();
    Ok((kind, nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev), m.mode() & 0o777))
}

/// Docker's default cgroup rules: deny everything, then mknod of any node
/// and the devices every container has in /dev.
pub fn default_rules() -> Vec<Value> {
    let allow = |t: &str, major: Option<u64>, minor: Option<u64>, access: &str| json!({"allow": true, "type": t, "major": major, "minor": minor, "access": access});
    vec![
        json!({"allow": false, "access": "rwm"}),
        allow("c", None, None, "m"),
        allow("b", None, None, "m"),
        allow("c", Some(1), Some(3), "rwm"), // null
        allow("c", Some(1), Some(5), "rwm"), // zero
        allow("c", Some(1), Some(7), "rwm"), // full
        allow("c", Some(1), Some(8), "rwm"), // random
        allow("c", Some(1), Some(9), "rwm"), // urandom
        allow("c", Some(5), Some(0), "rwm"), // tty
        allow("c", Some(5), Some(1), "rwm"), // console
        allow("c", Some(5), Some(2), "rwm"), // ptmx
        allow("c", Some(136), None, "rwm"),  // pts/*
    ]
}

/// Every device node under the host's /dev, as docker's `--privileged`
/// gives them (not the per-mount ones: pts, shm, mqueue; not the console).
pub fn host_devices() -> Vec<Device> {
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<Device>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let skip = ["pts", "shm", "mqueue", "fd", ".lxc", ".udev"];
            if !skip.iter().any(|s| e.file_name() == *s) {
                walk(&p, out);
            }
        } else if (ft.is_char_device() || ft.is_block_device()) && p != Path::new("/dev/console") {
            if let (Ok((kind, major, minor, mode)), Some(s)) = (stat(&p), p.to_str()) {
                out.push(Device { host: s.into(), ctr: s.into(), kind, major, minor, mode, access: "rwm".into() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_as_docker_reads_them() {
        let d = parse("/dev/null").unwrap();
        assert_eq!((d.kind, d.major, d.minor, d.ctr.as_str(), d.access.as_str()), ('c', 1, 3, "/dev/null", "rwm"));
        let d = parse("/dev/null:r").unwrap();
        assert_eq!((d.ctr.as_str(), d.access.as_str()), ("/dev/null", "r"));
        let d = parse("/dev/null:/dev/nothing:rw").unwrap();
        assert_eq!((d.ctr.as_str(), d.access.as_str()), ("/dev/nothing", "rw"));
        assert_eq!(d.rule(), json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));
        assert!(parse("/etc/passwd").unwrap_err().to_string().contains("/etc/passwd is not a device node"));
        assert!(parse("/dev/no-such-node").unwrap_err().to_string().contains("does not exist"));
        assert!(parse("/dev/null:/x:rx").unwrap_err().to_string().contains("some of r, w and m"));
        assert!(parse("/dev/null:/x:rr").is_err());
        assert!(parse("dev/null").unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn default_rules_deny_first_and_allow_the_standard_nodes() {
        let r = default_rules();
        assert_eq!(r[0], json!({"allow": false, "access": "rwm"}));
        assert!(r.iter().any(|x| x["major"] == 136 && x["minor"].is_null()));
        assert_eq!(r.iter().filter(|x| x["access"] == "m").count(), 2);
    }
}
