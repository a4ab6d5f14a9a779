//! `rcon cluster apply FILE`: the cluster described in a file (TOML or
//! JSON), reconciled: init when this node is in no cluster; what this node
//! made and lost since (its network, its device, the userspace IPIP daemon,
//! a peer's route) brought back; peers added, changed or removed to match;
//! nothing else touched. Applying the same file twice changes nothing.
//!
//! ```toml
//! [cluster]
//! cidr = "10.244.0.0/16"
//! node_subnet = "10.244.1.0/24"
//! backend = "vxlan"          # host-gw, vxlan, vxlan-l2, ipip
//! vni = 1                    # optional, as are port, underlay, network, ipip_mode
//!
//! [[nodes]]
//! name = "node2"
//! underlay_ip = "192.168.50.2"
//! subnet = "10.244.2.0/24"
//! ```

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;

use super::{Backend, InitRequest, IpipMode, Node, Peers};
use crate::net::kernel::Kernel;
use crate::Context;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub cidr: Ipv4Net,
    #[serde(alias = "node-subnet")]
    pub node_subnet: Ipv4Net,
    pub backend: Backend,
    #[serde(default)]
    pub vni: Option<u32>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub underlay: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default, alias = "ipip-mode")]
    pub ipip_mode: Option<IpipMode>,
}

impl ClusterSpec {
    pub fn request(&self) -> InitRequest {
        InitRequest {
            cidr: self.cidr,
            node_subnet: self.node_subnet,
            backend: self.backend,
            vni: self.vni.unwrap_or(super::DEFAULT_VNI),
            port: self.port.unwrap_or(super::DEFAULT_PORT),
            underlay: self.underlay.clone(),
            network: self.network.clone().unwrap_or_else(|| super::DEFAULT_NETWORK.into()),
            ipip_mode: self.ipip_mode.unwrap_or_default(),
        }
    }
}

/// Read FILE: JSON when it starts with `{`, TOML otherwise.
pub fn parse(path: &Path) -> Result<File> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?
    };
    let mut names = std::collections::HashSet::new();
    for n in &f.nodes {
        if !names.insert(&n.name) {
            bail!("{}: node {} is declared twice", path.display(), n.name);
        }
    }
    Ok(f)
}

/// What `apply` did, one line each.
pub fn apply(ctx: &Context, path: &Path) -> Result<Vec<String>> {
    apply_with(ctx, &Kernel::real(), path)
}

/// [`apply`] on these links and firewalls.
pub fn apply_with(ctx: &Context, k: &Kernel, path: &Path) -> Result<Vec<String>> {
    let f = parse(path)?;
    let want = f.cluster.request();
    let mut done = Vec::new();
    match super::load(&ctx.data_root)? {
        None => {
            let (_, note) = super::init_with(ctx, k, &want)?;
            done.push(format!("initialised cluster {} on {} ({})", want.cidr, want.node_subnet, want.backend));
            done.extend(note);
        }
        Some(c) if c.store.is_some() => {
            bail!("{}: this node's peers come from etcd (`cluster init --store etcd`); `cluster apply` is for peers declared in a file", path.display());
        }
        Some(c) => {
            let differs = c.cidr != want.cidr
                || c.node_subnet != want.node_subnet
                || c.backend != want.backend
                || c.vni != want.vni
                || c.port != want.port
                || c.network != want.network
                || c.ipip_mode != want.ipip_mode
                || want.underlay.as_ref().is_some_and(|u| *u != c.underlay);
            if differs {
                bail!("{}: the [cluster] settings differ from this node's: `rcon cluster reset` first", path.display());
            }
            // What went missing behind rcon's back comes back first: peers
            // need the device.
            done.extend(super::repair_with(ctx, k)?);
        }
    }
    let have = Peers::list(&super::peers(&ctx.data_root))?;
    for old in &have {
        match f.nodes.iter().find(|n| n.name == old.name) {
            Some(n) if n == old => {}
            _ => {
                super::remove_node_with(ctx, k, &old.name)?;
                done.push(format!("removed node {}", old.name));
            }
        }
    }
    for n in &f.nodes {
        if !have.iter().any(|o| o == n) {
            super::add_node_with(ctx, k, n)?;
            done.push(format!("added node {}", n.name));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("c.toml");
        std::fs::write(
            &t,
            "[cluster]\ncidr = \"10.244.0.0/16\"\nnode_subnet = \"10.244.1.0/24\"\nbackend = \"vxlan-l2\"\n\n\
             [[nodes]]\nname = \"n2\"\nunderlay_ip = \"192.168.50.2\"\nsubnet = \"10.244.2.0/24\"\n",
        )
        .unwrap();
        let j = d.path().join("c.json");
        std::fs::write(
            &j,
            r#"{"cluster": {"cidr": "10.244.0.0/16", "node-subnet": "10.244.1.0/24", "backend": "vxlan-l2"},
                "nodes": [{"name": "n2", "underlay_ip": "192.168.50.2", "subnet": "10.244.2.0/24"}]}"#,
        )
        .unwrap();
        let (a, b) = (parse(&t).unwrap(), parse(&j).unwrap());
        assert_eq!(a.cluster.request(), b.cluster.request());
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(a.cluster.request().vni, 1);
        assert_eq!(a.cluster.request().backend, Backend::VxlanL2);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "[cluster]\ncidr = \"10.244.0.0/16\"\nbackend = \"gre\"\n").unwrap();
        assert!(parse(&p).is_err());
        std::fs::write(
            &p,
            "[cluster]\ncidr = \"10.244.0.0/16\"\nnode_subnet = \"10.244.1.0/24\"\nbackend = \"vxlan\"\n\
             [[nodes]]\nname = \"a\"\nunderlay_ip = \"10.0.0.2\"\nsubnet = \"10.244.2.0/24\"\n\
             [[nodes]]\nname = \"a\"\nunderlay_ip = \"10.0.0.3\"\nsubnet = \"10.244.3.0/24\"\n",
        )
        .unwrap();
        assert!(parse(&p).unwrap_err().to_string().contains("declared twice"));
    }
}
