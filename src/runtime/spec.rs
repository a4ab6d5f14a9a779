//! config.json: loading with errors that name the field, validation, defaults.

pub use crate::sys::ns::{check_ns_file, ns_proc_name};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

use crate::store;

/// A loaded bundle: its absolute directory, its spec and its absolute rootfs.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

/// Load `bundle/config.json`, then check everything that can be checked
/// before any side effect happens.
pub fn load_bundle(bundle: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(bundle).with_context(|| format!("bundle {}", bundle.display()))?;
    if !dir.is_dir() {
        bail!("bundle {}: not a directory", dir.display());
    }
    let config = dir.join("config.json");
    if !config.exists() {
        bail!("bundle {}: config.json not found", dir.display());
    }
    let spec: Spec = store::read_json(&config)?;
    let root = spec.root().as_ref().context("config.json: field root: missing")?;
    // Resolved, as runc does: mounts are made, and found again by delete, at
    // the real path.
    let rootfs = dir.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs)
        .ok()
        .filter(|r| r.is_dir())
        .with_context(|| format!("config.json: field root.path: {} is not a directory", rootfs.display()))?;
    // The spec makes `process` optional until `start`: such a container is
    // created (hooks, namespaces, mounts) and refuses to start.
    if let Some(process) = spec.process() {
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            bail!("config.json: field process.args: must name a command");
        }
    }
    validate_namespaces(namespaces(&spec))?;
    if !creates_namespace(&spec, LinuxNamespaceType::Mount)
        && spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_ref()).is_some()
    {
        bail!("config.json: field linux.rootfsPropagation: needs a mount namespace of the container's own");
    }
    super::unsupported::refuse(&spec)?;
    if creates_namespace(&spec, LinuxNamespaceType::User) && id_maps(&spec).is_none() {
        bail!("config.json: field linux.uidMappings: a new user namespace needs uidMappings and gidMappings");
    }
    validate_sysctls(&spec)?;
    validate_hook_timeouts(&spec)?;
    if let Some(h) = spec.hostname() {
        check_hostname("config.json: field hostname:", h)?;
    }
    if let Some(d) = spec.domainname() {
        check_hostname("config.json: field domainname:", d)?;
    }
    Ok(Bundle { dir, spec, rootfs })
}

pub fn namespaces(spec: &Spec) -> &[LinuxNamespace] {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_deref()).unwrap_or(&[])
}

/// uid_map and gid_map file contents ("container host size" lines).
pub fn id_maps(spec: &Spec) -> Option<(String, String)> {
    let linux = spec.linux().as_ref()?;
    let render = |m: &[oci_spec::runtime::LinuxIdMapping]| -> String {
        m.iter().map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size())).collect()
    };
    let uids = linux.uid_mappings().as_deref().filter(|m| !m.is_empty())?;
    let gids = linux.gid_mappings().as_deref().filter(|m| !m.is_empty())?;
    Some((render(uids), render(gids)))
}

/// Whether the spec asks for a new namespace of this type (listed, no path).
pub fn creates_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    namespaces(spec).iter().any(|n| n.typ() == typ && n.path().is_none())
}

/// The clone flag of a namespace type.
pub fn ns_flag(typ: LinuxNamespaceType) -> nix::sched::CloneFlags {
    nix::sched::CloneFlags::from_bits_retain(typ as i32)
}

fn validate_namespaces(list: &[LinuxNamespace]) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, ns) in list.iter().enumerate() {
        let name = ns_proc_name(ns.typ());
        if !seen.insert(ns.typ()) {
            bail!("config.json: field linux.namespaces[{i}]: namespace {name:?} listed twice");
        }
        if let Some(path) = ns.path() {
            check_ns_file(path, ns.typ()).with_context(|| format!("config.json: field linux.namespaces[{i}].path"))?;
        }
    }
    Ok(())
}

/// The runtime spec: a hook timeout, when given, must be greater than zero.
#[allow(deprecated)]
fn validate_hook_timeouts(spec: &Spec) -> Result<()> {
    let Some(h) = spec.hooks().as_ref() else {
        return Ok(());
    };
    let stages = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (name, list) in stages {
        for (i, hook) in list.as_deref().unwrap_or(&[]).iter().enumerate() {
            if hook.timeout().is_some_and(|t| t <= 0) {
                bail!("config.json: field hooks.{name}[{i}].timeout: must be greater than 0");
            }
        }
    }
    Ok(())
}

/// The kernel's limit on a host or domain name (HOST_NAME_MAX): longer is EINVAL.
pub const HOST_NAME_MAX: usize = 64;

/// Refuse a hostname the kernel would refuse, saying the limit.
pub fn check_hostname(what: &str, name: &str) -> Result<()> {
    store::check_len(what, name, HOST_NAME_MAX, "HOST_NAME_MAX")
}

/// Only namespaced sysctls, and only when the container has that namespace.
fn validate_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let has = |t| namespaces(spec).iter().any(|n| n.typ() == t);
    for key in sysctl.keys() {
        let ok = if key.starts_with("net.") {
            has(LinuxNamespaceType::Network)
        } else if key.starts_with("kernel.shm")
            || key.starts_with("kernel.msg")
            || key == "kernel.sem"
            || key.starts_with("fs.mqueue.")
        {
            has(LinuxNamespaceType::Ipc)
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            has(LinuxNamespaceType::Uts)
        } else {
            false
        };
        if !ok {
            bail!(
                "config.json: field linux.sysctl.{key}: not namespaced, or the container does not have that namespace"
            );
        }
        if key.contains("..") || key.contains('/') {
            bail!("config.json: field linux.sysctl.{key}: invalid name");
        }
    }
    Ok(())
}

/// A runc-like default: a busybox-friendly `sh` with a terminal and new
/// pid, network, ipc, uts and mount namespaces.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(super::state::OCI_VERSION.to_string());
    spec.set_hostname(Some("rcon".into()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
        // As `runc spec` since CVE-2022-29162: no inheritable set, so a
        // file capability cannot give an exec'd program more than it had.
        if let Some(mut c) = p.capabilities().clone() {
            c.set_inheritable(None);
            p.set_capabilities(Some(c));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        let keep: Vec<LinuxNamespace> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::User && n.typ() != LinuxNamespaceType::Cgroup)
            .collect();
        linux.set_namespaces(Some(keep));
    }
    spec
}

/// `rcon spec`: refuse to overwrite, like runc.
pub fn write_default(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} exists; remove it first", path.display());
    }
    store::write_json(&path, &default_spec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn default_json() -> serde_json::Value {
        serde_json::to_value(default_spec()).unwrap()
    }

    #[test]
    fn default_spec_loads_back() {
        let d = bundle_with(&default_json().to_string());
        let b = load_bundle(d.path()).unwrap();
        assert!(creates_namespace(&b.spec, LinuxNamespaceType::Network));
        assert!(b.rootfs.ends_with("rootfs"));
    }

    #[test]
    fn unknown_namespace_type_names_the_field() {
        let mut v = default_json();
        v["linux"]["namespaces"][0]["type"] = "bogus".into();
        let d = bundle_with(&v.to_string());
        let err = format!("{:#}", load_bundle(d.path()).err().unwrap());
        assert!(err.contains("linux.namespaces[0].type"), "{err}");
    }

    #[test]
    fn spec_writes_no_inheritable_set_as_runc() {
        let caps = &default_json()["process"]["capabilities"];
        assert!(caps.get("inheritable").is_none(), "{caps}");
        assert!(caps["ambient"].as_array().is_some_and(|a| !a.is_empty()), "{caps}");
    }

    #[test]
    fn unknown_capability_name_is_refused_at_load() {
        let mut v = default_json();
        v["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_KILL", "CAP_BOGUS"]);
        let d = bundle_with(&v.to_string());
        let err = format!("{:#}", load_bundle(d.path()).err().unwrap());
        assert!(err.contains("process.capabilities.bounding[1]") && err.contains("CAP_BOGUS"), "{err}");
    }

    #[test]
    fn config_without_process_loads() {
        let mut v = default_json();
        v.as_object_mut().unwrap().remove("process");
        let d = bundle_with(&v.to_string());
        assert!(load_bundle(d.path()).unwrap().spec.process().is_none());
    }

    #[test]
    fn malformed_json_is_an_error() {
        let d = bundle_with("{ not json");
        let err = format!("{:#}", load_bundle(d.path()).err().unwrap());
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn wrong_namespace_path_type_is_refused() {
        let mut v = default_json();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "network", "path": "/proc/self/ns/uts"}]);
        let d = bundle_with(&v.to_string());
        let err = format!("{:#}", load_bundle(d.path()).err().unwrap());
        assert!(err.contains("not a net namespace"), "{err}");
    }

    #[test]
    fn host_sysctl_is_refused() {
        let mut v = default_json();
        v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "10"});
        let d = bundle_with(&v.to_string());
        assert!(load_bundle(d.path()).is_err());
        v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        let d = bundle_with(&v.to_string());
        assert!(load_bundle(d.path()).is_ok());
    }

    #[test]
    fn new_user_namespace_needs_maps() {
        let mut v = default_json();
        v["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        let d = bundle_with(&v.to_string());
        assert!(format!("{:#}", load_bundle(d.path()).err().unwrap()).contains("uidMappings"));
        v["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 10}]);
        v["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 2000, "size": 1}]);
        let d = bundle_with(&v.to_string());
        let b = load_bundle(d.path()).unwrap();
        assert_eq!(id_maps(&b.spec).unwrap(), ("0 1000 10\n".into(), "0 2000 1\n".into()));
    }

    #[test]
    fn zero_hook_timeout_is_refused() {
        let mut v = default_json();
        v["hooks"] = serde_json::json!({"poststart": [{"path": "/bin/true", "timeout": 0}]});
        let d = bundle_with(&v.to_string());
        let err = format!("{:#}", load_bundle(d.path()).err().unwrap());
        assert!(err.contains("hooks.poststart[0].timeout"), "{err}");
    }

    #[test]
    fn missing_rootfs_and_args() {
        let mut v = default_json();
        v["root"]["path"] = "nope".into();
        let d = bundle_with(&v.to_string());
        assert!(format!("{:#}", load_bundle(d.path()).err().unwrap()).contains("root.path"));
        let mut v = default_json();
        v["process"]["args"] = serde_json::json!([]);
        let d = bundle_with(&v.to_string());
        assert!(format!("{:#}", load_bundle(d.path()).err().unwrap()).contains("process.args"));
    }
}
