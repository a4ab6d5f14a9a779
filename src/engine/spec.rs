//! The OCI config.json for a docker-style `run`: the image's config
//! (Entrypoint, Cmd, Env, WorkingDir, User) with the command line's
//! overrides, docker's default capabilities, and the network mode.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::image::RunConfig;

/// Docker's default capability set: enough for ping (NET_RAW), chown and
/// setuid inside the container, nothing that reaches the host.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Where the container's network namespace comes from (`--net`).
#[derive(Debug, Clone, PartialEq)]
pub enum Net {
    /// A new namespace holding only `lo` (the default until bridges land).
    None,
    /// The host's namespace.
    Host,
    /// An existing namespace file (`ns:PATH`, or `container:NAME` resolved to
    /// that container's /proc/PID/ns/net).
    Path(PathBuf),
}

/// Which cgroup namespace the container gets (`--cgroupns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupNs {
    /// A new one, rooted at the container's own cgroup, so the container
    /// sees neither the node's tree nor other containers' groups (docker's
    /// default on cgroup v2).
    #[default]
    Private,
    /// rcon's own: the container sees the whole tree and its full path.
    Host,
}

/// What the command line asks for, beyond the image.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub hostname: Option<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub cgroupns: CgroupNs,
    /// `--security-opt`: the seccomp filter and no-new-privileges.
    pub security: super::security_opt::SecurityOpts,
    /// Docker's resource and security flags (`confine.privileged` included).
    pub confine: super::confine::Flags,
}

/// The process arguments: Entrypoint + (the given command, else Cmd).
pub fn args(img: &RunConfig, cmd: &[String]) -> Result<Vec<String>> {
    let tail = if cmd.is_empty() { &img.cmd } else { cmd };
    let args: Vec<String> = img.entrypoint.iter().chain(tail).cloned().collect();
    if args.is_empty() {
        bail!("the image has no Entrypoint or Cmd: give a command");
    }
    Ok(args)
}

/// Image env, then HOSTNAME, then `-e` (a bare `-e KEY` copies rcon's own value).
pub fn env(img: &RunConfig, hostname: &str, extra: &[String], tty: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        out.retain(|e| e.split('=').next() != Some(key.as_str()));
        out.push(kv);
    };
    set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    img.env.iter().cloned().for_each(&mut set);
    set(format!("HOSTNAME={hostname}"));
    if tty {
        set("TERM=xterm".into());
    }
    for e in extra {
        match e.split_once('=') {
            Some(_) => set(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(format!("{e}={v}"));
                }
            }
        }
    }
    out
}

/// `UID[:GID]`, or names looked up in the rootfs' /etc/passwd and /etc/group.
pub fn user(spec: &str, rootfs: &Path) -> Result<(u32, u32)> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, lookup(&passwd, 2, |f| f[2] == u).and_then(|f| f[3].parse().ok()).unwrap_or(0)),
        Err(_) => {
            let f = lookup(&passwd, 3, |f| f[0] == u).with_context(|| format!("user {u:?} not found in the image"))?;
            (f[2].parse()?, f[3].parse()?)
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                let f =
                    lookup(&group, 2, |f| f[0] == g).with_context(|| format!("group {g:?} not found in the image"))?;
                f[2].parse()?
            }
        },
    };
    Ok((uid, gid))
}

fn lookup(file: &str, min: usize, pred: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    file.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > min && pred(f))
}

/// Everything that goes into config.json.
pub struct Build<'a> {
    pub img: &'a RunConfig,
    pub image_name: &'a str,
    pub name: &'a str,
    pub rootfs: &'a Path,
    pub hostname: &'a str,
    pub o: &'a Overrides,
    pub net: &'a Net,
    /// Other namespaces to join by path (a pod's ipc, uts and pid): (OCI type, file).
    pub joins: &'a [(&'static str, PathBuf)],
    /// Files bind-mounted over /etc/hosts and /etc/hostname (and resolv.conf).
    pub etc_files: &'a [(PathBuf, &'a str)],
}

pub fn build(b: &Build) -> Result<Spec> {
    let mut v = serde_json::to_value(crate::runtime::spec::default_spec())?;
    let args = args(b.img, &b.o.cmd)?;
    let (uid, gid) = user(b.o.user.as_deref().unwrap_or(&b.img.user), b.rootfs)?;
    let cwd = b.o.workdir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| match b.img.working_dir.as_str() {
        "" => "/".to_string(),
        w => w.to_string(),
    });
    if !cwd.starts_with('/') {
        bail!("working directory {cwd:?} must be absolute");
    }
    v["root"] = json!({"path": b.rootfs, "readonly": false});
    v["hostname"] = json!(b.hostname);
    let p = &mut v["process"];
    p["terminal"] = json!(b.o.tty);
    p["args"] = json!(args);
    p["env"] = json!(env(b.img, b.hostname, &b.o.env, b.o.tty));
    p["cwd"] = json!(cwd);
    p["user"] = json!({"uid": uid, "gid": gid});
    p["noNewPrivileges"] = json!(false);
    // confine::apply sets bounding, effective and permitted from DEFAULT_CAPS and the flags.
    p["capabilities"]["inheritable"] = json!([]);
    p["capabilities"]["ambient"] = json!([]);
    let confine = super::confine::parse(&b.o.confine)?;
    v["annotations"] = json!({
        super::names::NAME: b.name,
        super::names::IMAGE: b.image_name,
        super::names::COMMAND: args.join(" "),
        super::confine::HOST_CONFIG: super::confine::host_config(&confine).to_string(),
    });
    set_network(&mut v, b.net);
    if b.o.cgroupns == CgroupNs::Private {
        // The runtime unshares it after the process has joined its cgroups,
        // so its root is the container's own group.
        add_namespace(&mut v, json!({"type": "cgroup"}));
    }
    join_namespaces(&mut v, b.joins);
    let mounts = v["mounts"].as_array_mut().context("default spec has mounts")?;
    for (src, dest) in b.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    if *b.net == Net::Host {
        // The host's /sys shows the host's links; a new sysfs would be refused anyway.
        mounts.retain(|m| m["destination"] != "/sys");
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "ro", "nosuid", "noexec", "nodev"]}));
    }
    super::confine::apply(&mut v, &confine, &DEFAULT_CAPS)?;
    // Last: the seccomp filter follows the final capability set.
    super::security_opt::apply(&mut v, &b.o.security, confine.privileged)?;
    Ok(serde_json::from_value(v)?)
}

fn set_network(v: &mut Value, net: &Net) {
    match net {
        Net::None => add_namespace(v, json!({"type": "network"})),
        Net::Host => remove_namespace(v, "network"),
        Net::Path(p) => add_namespace(v, json!({"type": "network", "path": p})),
    }
}

/// Put `ns` in linux.namespaces, in place of any entry of its type.
fn add_namespace(v: &mut Value, ns: Value) {
    remove_namespace(v, ns["type"].as_str().unwrap_or_default());
    if let Some(list) = v["linux"]["namespaces"].as_array_mut() {
        list.push(ns);
    }
}

fn remove_namespace(v: &mut Value, kind: &str) {
    if let Some(list) = v["linux"]["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != kind);
    }
}

/// Replace the new namespaces of these types by the given files. A joined
/// uts namespace keeps its own hostname (runc refuses one in the config).
fn join_namespaces(v: &mut Value, joins: &[(&str, PathBuf)]) {
    if joins.iter().any(|(t, _)| *t == "uts") {
        if let Some(o) = v.as_object_mut() {
            o.remove("hostname");
        }
    }
    for (kind, path) in joins {
        add_namespace(v, json!({"type": kind, "path": path}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RunConfig {
        RunConfig {
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cmd: vec!["sh".into()],
            entrypoint: vec![],
            working_dir: "/srv".into(),
            user: String::new(),
            exposed_ports: vec![],
        }
    }

    #[test]
    fn command_replaces_cmd_but_keeps_entrypoint() {
        let mut c = cfg();
        assert_eq!(args(&c, &[]).unwrap(), vec!["sh"]);
        assert_eq!(args(&c, &["ls".into(), "-l".into()]).unwrap(), vec!["ls", "-l"]);
        c.entrypoint = vec!["/init".into()];
        assert_eq!(args(&c, &["x".into()]).unwrap(), vec!["/init", "x"]);
        c.entrypoint.clear();
        c.cmd.clear();
        assert!(args(&c, &[]).is_err());
    }

    #[test]
    fn env_overrides_by_key() {
        let e = env(&cfg(), "h1", &["A=2".into(), "B=3".into()], true);
        assert!(e.contains(&"PATH=/bin".to_string()));
        assert!(e.contains(&"A=2".to_string()) && !e.contains(&"A=1".to_string()));
        assert!(e.contains(&"HOSTNAME=h1".to_string()) && e.contains(&"TERM=xterm".to_string()));
    }

    #[test]
    fn users_by_number_and_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:33:44::/:/bin/sh\n").unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(user("1000:1001", d.path()).unwrap(), (1000, 1001));
        assert_eq!(user("web", d.path()).unwrap(), (33, 44));
        assert_eq!(user("33", d.path()).unwrap(), (33, 44));
        assert_eq!(user("web:staff", d.path()).unwrap(), (33, 50));
        assert!(user("nobody-here", d.path()).is_err());
    }

    fn namespaces_of(o: &Overrides, net: &Net, joins: &[(&'static str, PathBuf)]) -> Vec<Value> {
        let b = Build {
            img: &cfg(),
            image_name: "img",
            name: "c1",
            rootfs: Path::new("/nonexistent"),
            hostname: "h",
            o,
            net,
            joins,
            etc_files: &[],
        };
        let v = serde_json::to_value(build(&b).unwrap()).unwrap();
        v["linux"]["namespaces"].as_array().unwrap().clone()
    }

    #[test]
    fn cgroup_namespace_is_private_unless_host() {
        let has_cgroup = |o: &Overrides| namespaces_of(o, &Net::None, &[]).iter().any(|n| n["type"] == "cgroup");
        assert!(has_cgroup(&Overrides::default()));
        assert!(!has_cgroup(&Overrides { cgroupns: CgroupNs::Host, ..Default::default() }));
        // A pod member joins the pod's namespaces and still gets its own cgroup namespace.
        let joins = [("ipc", PathBuf::from("/p/ipc")), ("uts", PathBuf::from("/p/uts"))];
        let list = namespaces_of(&Overrides::default(), &Net::Path("/p/net".into()), &joins);
        let types: Vec<&str> = list.iter().filter_map(|n| n["type"].as_str()).collect();
        assert_eq!(types.iter().filter(|t| **t == "cgroup").count(), 1, "{types:?}");
        assert!(list.iter().any(|n| n["type"] == "ipc" && n["path"] == "/p/ipc"), "{list:?}");
        assert!(list.iter().any(|n| n["type"] == "network" && n["path"] == "/p/net"), "{list:?}");
    }
}
