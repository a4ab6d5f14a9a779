//! The JSON documents of OCI layouts, registries and `docker save`
//! archives, read leniently: only the fields rcon needs, so docker's
//! schema2 media types pass where they mean the same thing.

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::Value;

use super::RunConfig;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Desc {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Desc,
    #[serde(default)]
    pub layers: Vec<Desc>,
}

#[derive(Debug, Deserialize)]
pub struct Index {
    pub manifests: Vec<Desc>,
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Parse bytes that must be an image manifest (not an index).
pub fn parse_manifest(data: &[u8]) -> Result<Manifest> {
    let v: Value = serde_json::from_slice(data).context("parsing the image manifest")?;
    if v.get("manifests").is_some() {
        bail!("expected an image manifest, found an index");
    }
    serde_json::from_value(v).context("parsing the image manifest")
}

pub fn parse_index(data: &[u8]) -> Result<Index> {
    serde_json::from_slice(data).context("parsing index.json")
}

/// The index entry for this machine's platform (or the only one).
pub fn pick_platform(manifests: &[Desc]) -> Option<&Desc> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let fits = |d: &&Desc| d.platform.as_ref().is_some_and(|p| p["os"] == "linux" && p["architecture"] == arch);
    manifests.iter().find(fits).or(if manifests.len() == 1 { manifests.first() } else { None })
}

/// The run settings and the diff_ids of an image config.
pub fn parse_config(data: &[u8]) -> Result<(RunConfig, Vec<String>)> {
    let v: Value = serde_json::from_slice(data).context("parsing the image config")?;
    let c = &v["config"];
    let strs = |x: &Value| -> Vec<String> {
        x.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
    let mut ports: Vec<String> = c["ExposedPorts"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    ports.sort();
    let rc = RunConfig {
        env: strs(&c["Env"]),
        cmd: strs(&c["Cmd"]),
        entrypoint: strs(&c["Entrypoint"]),
        working_dir: s(&c["WorkingDir"]),
        user: s(&c["User"]),
        exposed_ports: ports,
    };
    Ok((rc, strs(&v["rootfs"]["diff_ids"])))
}

/// One image of a `docker save` manifest.json.
#[derive(Debug, Deserialize, PartialEq)]
pub struct DockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

pub fn parse_docker(data: &[u8]) -> Result<Vec<DockerEntry>> {
    let v: Vec<DockerEntry> = serde_json::from_slice(data).context("parsing the docker manifest.json")?;
    if v.is_empty() {
        bail!("the docker manifest.json lists no image");
    }
    Ok(v)
}

/// An OCI manifest for a docker-save image (its layers are plain tars).
pub fn synth_manifest(config: (&str, u64), layers: &[(String, u64)]) -> Vec<u8> {
    let desc = |mt: &str, d: &str, s: u64| serde_json::json!({"mediaType": mt, "digest": d, "size": s});
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, config.0, config.1),
        "layers": layers.iter().map(|(d, s)| desc(OCI_LAYER_TAR, d, *s)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_manifest() {
        let j = br#"[{"Config":"abc.json","RepoTags":["busybox:latest"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        let v = parse_docker(j).unwrap();
        assert_eq!(v[0].config, "abc.json");
        assert_eq!(v[0].repo_tags.as_deref(), Some(&["busybox:latest".to_string()][..]));
        assert_eq!(v[0].layers.len(), 2);
        assert!(parse_docker(b"[]").is_err());
        assert!(parse_docker(b"{").is_err());
    }

    #[test]
    fn config_fields() {
        let j = br#"{"config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1:2",
            "ExposedPorts":{"80/tcp":{},"53/udp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let (rc, ids) = parse_config(j).unwrap();
        assert_eq!(rc.env, vec!["PATH=/bin"]);
        assert_eq!(rc.cmd, vec!["sh"]);
        assert_eq!(rc.working_dir, "/w");
        assert_eq!(rc.exposed_ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(ids, vec!["sha256:aa"]);
    }

    #[test]
    fn manifest_vs_index() {
        let m = synth_manifest(("sha256:c", 2), &[("sha256:l".into(), 3)]);
        let p = parse_manifest(&m).unwrap();
        assert_eq!(p.layers[0].digest, "sha256:l");
        assert!(parse_manifest(br#"{"manifests":[]}"#).is_err());
    }
}
