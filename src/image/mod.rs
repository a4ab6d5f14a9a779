//! The local image store under `<data-root>/images`: import of OCI layouts
//! and `docker save` archives, pull from OCI registries, layers unpacked
//! (with whiteouts) into a cached rootfs that containers use read-only.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// An image known to the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// Normalized `repo:tag` (`busybox` -> `busybox:latest`).
    pub name: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config blob (docker's image id).
    pub config_digest: String,
    /// The parts of the image config that `run` uses.
    pub config: RunConfig,
    /// Sum of the compressed layer sizes, in bytes.
    pub size: u64,
}

/// Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts from the image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// `80/tcp`, `53/udp`, …
    pub exposed_ports: Vec<String>,
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store under `<data_root>/images`.
    pub fn open(data_root: &Path) -> Result<Store> {
        let root = data_root.join("images");
        std::fs::create_dir_all(&root)?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Import an OCI image layout (dir or tar) or a `docker save` archive.
    /// `name` overrides the archive's own name(s).
    pub fn import(&self, _src: &Path, _name: Option<&str>) -> Result<Vec<Image>> {
        anyhow::bail!("image import: not implemented yet")
    }

    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(Vec::new())
    }

    /// Look an image up by name (`busybox`, `busybox:latest`,
    /// `localhost:5000/busybox:1`); unknown names list the known ones.
    pub fn get(&self, name: &str) -> Result<Image> {
        anyhow::bail!("no image {name:?}")
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        anyhow::bail!("no image {name:?}")
    }

    /// The unpacked root filesystem of `img`, built once and then shared:
    /// callers must not write to it (run mounts an overlay on top).
    pub fn rootfs(&self, _img: &Image) -> Result<PathBuf> {
        anyhow::bail!("image rootfs: not implemented yet")
    }

    /// Pull `reference` from its registry (plain HTTP for localhost and
    /// 127.0.0.0/8, or when `insecure`), store it and return it.
    pub fn pull(&self, _reference: &str, _insecure: bool) -> Result<Image> {
        anyhow::bail!("pull: not implemented yet")
    }
}

/// `busybox` -> `busybox:latest`; a digest or a tag is kept.
pub fn normalize(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}
