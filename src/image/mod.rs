//! The local image store under `<data-root>/images`: import of OCI layouts
//! and `docker save` archives, pull from OCI registries, layers unpacked
//! (with whiteouts) into a cached rootfs that containers use read-only.
//!
//! Layout: `blobs/sha256/<hex>` (content-addressed, verified on the way in),
//! `index.json` (name -> image), `rootfs/<manifest-hex>/` (unpacked cache),
//! `tmp/<pid>-<n>/` (staging). Every change is staged and checked in `tmp`
//! first, then moved in and published by one index write under `.lock`, so
//! bad input leaves the store as it was.

mod digest;
mod import;
mod manifest;
mod pull;
mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _, Result};
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

/// One name in index.json, with the blobs it keeps alive.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    image: Image,
    layers: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    images: BTreeMap<String, Entry>,
}

/// An image checked and unpacked in a staging dir, ready to publish.
struct Prepared {
    names: Vec<String>,
    image: Image,
    layers: Vec<String>,
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store under `<data_root>/images`.
    pub fn open(data_root: &Path) -> Result<Store> {
        let root = data_root.join("images");
        for d in ["blobs/sha256", "rootfs", "tmp"] {
            fs::create_dir_all(root.join(d)).with_context(|| format!("creating {}", root.join(d).display()))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Import an OCI image layout (dir or tar) or a `docker save` archive.
    /// `name` overrides the archive's own name(s).
    pub fn import(&self, src: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let st = self.staging()?;
        let prepared = import::read(self, &st, src, name).with_context(|| format!("importing {}", src.display()))?;
        self.publish(&st, prepared)
    }

    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(self.read_index()?.images.into_values().map(|e| e.image).collect())
    }

    /// Look an image up by name (`busybox`, `busybox:latest`,
    /// `localhost:5000/busybox:1`); unknown names list the known ones. A
    /// short name with no registry also finds `REGISTRY/NAME:TAG` when
    /// that names one image.
    pub fn get(&self, name: &str) -> Result<Image> {
        let idx = self.read_index()?;
        resolve(&idx, name).map(|e| e.image.clone())
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let _l = self.lock()?;
        let mut idx = self.read_index()?;
        let key = resolve(&idx, name)?.image.name.clone();
        let gone = idx.images.remove(&key).unwrap();
        let shared = idx.images.values().any(|e| e.image.manifest_digest == gone.image.manifest_digest);
        if !shared {
            let rootfs = self.rootfs_path(&gone.image.manifest_digest)?;
            if is_mounted(&rootfs) {
                bail!("image {key} is in use: its rootfs {} is a container's lower layer", rootfs.display());
            }
        }
        self.write_index(&idx)?;
        self.gc(&idx);
        Ok(())
    }

    /// The unpacked root filesystem of `img`, built once and then shared:
    /// callers must not write to it (run mounts an overlay on top).
    pub fn rootfs(&self, img: &Image) -> Result<PathBuf> {
        let path = self.rootfs_path(&img.manifest_digest)?;
        if path.is_dir() {
            return Ok(path);
        }
        // Rebuild a cache that was removed: the blobs are the truth.
        let st = self.staging()?;
        let m = manifest::parse_manifest(&fs::read(self.blob(&img.manifest_digest)?)?)?;
        let (_, diff_ids) = manifest::parse_config(&fs::read(self.blob(&img.config_digest)?)?)?;
        let layers: Vec<String> = m.layers.iter().map(|d| d.digest.clone()).collect();
        let tmp = st.unpack(self, &img.manifest_digest, &layers, &diff_ids)?;
        let _l = self.lock()?;
        if !path.exists() {
            fs::rename(&tmp, &path).with_context(|| format!("publishing {}", path.display()))?;
        }
        Ok(path)
    }

    /// Pull `reference` from its registry (plain HTTP for localhost and
    /// 127.0.0.0/8, or when `insecure`), store it and return it.
    pub fn pull(&self, reference: &str, insecure: bool) -> Result<Image> {
        let st = self.staging()?;
        let p = pull::pull(self, &st, reference, insecure).with_context(|| format!("pulling {reference}"))?;
        Ok(self.publish(&st, vec![p])?.remove(0))
    }

    // ---- internals ----

    fn lock(&self) -> Result<crate::store::Lock> {
        crate::store::lock(&self.root.join(".lock"))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<IndexFile> {
        if !self.index_path().exists() {
            return Ok(IndexFile::default());
        }
        crate::store::read_json(&self.index_path())
    }

    fn write_index(&self, idx: &IndexFile) -> Result<()> {
        crate::store::write_durable(&self.index_path(), &serde_json::to_vec_pretty(idx)?)
    }

    fn blob(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest::hex(digest)?))
    }

    fn rootfs_path(&self, manifest_digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("rootfs").join(digest::hex(manifest_digest)?))
    }

    fn staging(&self) -> Result<Staging> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = self.root.join("tmp").join(format!("{}-{n}", std::process::id()));
        fs::create_dir_all(dir.join("blobs")).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging { dir })
    }

    /// Move staged blobs and rootfs dirs in, then point the names at them.
    fn publish(&self, st: &Staging, prepared: Vec<Prepared>) -> Result<Vec<Image>> {
        let _l = self.lock()?;
        for e in fs::read_dir(st.dir.join("blobs"))? {
            let e = e?;
            let dst = self.root.join("blobs/sha256").join(e.file_name());
            if !dst.exists() {
                fs::File::open(e.path())?.sync_all()?;
                fs::rename(e.path(), &dst).with_context(|| format!("storing blob {}", dst.display()))?;
            }
        }
        let mut idx = self.read_index()?;
        let mut out = Vec::new();
        for p in prepared {
            let dst = self.rootfs_path(&p.image.manifest_digest)?;
            let tmp = st.rootfs_dir(&p.image.manifest_digest);
            if !dst.exists() && tmp.exists() {
                fs::rename(&tmp, &dst).with_context(|| format!("publishing {}", dst.display()))?;
            }
            for n in &p.names {
                let image = Image { name: n.clone(), ..p.image.clone() };
                idx.images.insert(n.clone(), Entry { image: image.clone(), layers: p.layers.clone() });
                out.push(image);
            }
        }
        self.write_index(&idx)?;
        self.gc(&idx);
        Ok(out)
    }

    /// Drop blobs and rootfs dirs no name uses, and staging dirs of dead
    /// processes. Called with the lock held; failures only leave garbage.
    fn gc(&self, idx: &IndexFile) {
        let mut keep = BTreeSet::new();
        for e in idx.images.values() {
            keep.insert(e.image.manifest_digest.clone());
            keep.insert(e.image.config_digest.clone());
            keep.extend(e.layers.iter().cloned());
        }
        let keep: BTreeSet<String> = keep.iter().filter_map(|d| digest::hex(d).ok().map(String::from)).collect();
        let entries = |d: &str| fs::read_dir(self.root.join(d)).into_iter().flatten().flatten();
        for e in entries("blobs/sha256") {
            if !keep.contains(&*e.file_name().to_string_lossy()) {
                let _ = fs::remove_file(e.path());
            }
        }
        for e in entries("rootfs") {
            if !keep.contains(&*e.file_name().to_string_lossy()) && !is_mounted(&e.path()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        for e in entries("tmp") {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A private dir under `tmp/`, removed on drop whatever happened.
struct Staging {
    dir: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Staging {
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs").join(digest::hex(digest)?))
    }

    /// A blob staged here, else one already in the store.
    fn find_blob(&self, store: &Store, digest: &str) -> Result<PathBuf> {
        let p = self.blob_path(digest)?;
        if p.exists() {
            return Ok(p);
        }
        let s = store.blob(digest)?;
        if s.exists() {
            return Ok(s);
        }
        bail!("blob {digest} is missing")
    }

    fn rootfs_dir(&self, manifest_digest: &str) -> PathBuf {
        self.dir.join(format!("rootfs-{}", manifest_digest.trim_start_matches("sha256:")))
    }

    /// Check the manifest's blobs and unpack its layers here.
    fn prepare(&self, store: &Store, manifest_digest: &str, names: Vec<String>) -> Result<Prepared> {
        let m = manifest::parse_manifest(&fs::read(self.find_blob(store, manifest_digest)?)?)?;
        if manifest::is_index(&m.media_type) {
            bail!("nested image index is not supported");
        }
        let (config, diff_ids) = manifest::parse_config(&fs::read(self.find_blob(store, &m.config.digest)?)?)?;
        let layers: Vec<String> = m.layers.iter().map(|d| d.digest.clone()).collect();
        self.unpack(store, manifest_digest, &layers, &diff_ids)?;
        let image = Image {
            name: String::new(),
            manifest_digest: manifest_digest.to_string(),
            config_digest: m.config.digest.clone(),
            config,
            size: m.layers.iter().filter_map(|d| d.size).sum(),
        };
        Ok(Prepared { names, image, layers })
    }

    /// Apply `layers` in order into a fresh dir here; checks each layer's
    /// uncompressed digest against the config's diff_ids when it has them.
    fn unpack(&self, store: &Store, manifest_digest: &str, layers: &[String], diff_ids: &[String]) -> Result<PathBuf> {
        if !diff_ids.is_empty() && diff_ids.len() != layers.len() {
            bail!("the config lists {} diff_ids for {} layers", diff_ids.len(), layers.len());
        }
        let root = self.rootfs_dir(manifest_digest);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)?;
        for (i, l) in layers.iter().enumerate() {
            let got = unpack::apply(&root, &self.find_blob(store, l)?).with_context(|| format!("layer {l}"))?;
            if let Some(want) = diff_ids.get(i) {
                digest::check(&format!("layer {l} (uncompressed)"), want, &got, None, 0)?;
            }
        }
        Ok(root)
    }
}

fn resolve<'a>(idx: &'a IndexFile, name: &str) -> Result<&'a Entry> {
    let n = normalize(name);
    if let Some(e) = idx.images.get(&n) {
        return Ok(e);
    }
    if !name.contains('/') {
        let suffix = format!("/{n}");
        let hits: Vec<&Entry> = idx.images.values().filter(|e| e.image.name.ends_with(&suffix)).collect();
        if let Some(first) = hits.first() {
            if hits.iter().all(|e| e.image.manifest_digest == first.image.manifest_digest) {
                return Ok(first);
            }
            let names: Vec<&str> = hits.iter().map(|e| e.image.name.as_str()).collect();
            bail!("image name {name:?} is ambiguous: {}", names.join(", "));
        }
    }
    if idx.images.is_empty() {
        bail!("no image {name:?}: the store is empty (rcon image import or rcon pull)");
    }
    let known: Vec<&str> = idx.images.keys().map(String::as_str).collect();
    bail!("no image {name:?}; known images: {}", known.join(", "))
}

/// A mount (an overlay's lowerdir) uses `path`.
fn is_mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&*p))
}

/// A usable image name: `repo[:tag]` with no spaces or control characters.
fn check_name(name: &str) -> Result<String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) || name.starts_with(['/', '-', ':'])
    {
        bail!("invalid image name {name:?}");
    }
    Ok(normalize(name))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("busybox:1"), "busybox:1");
        assert_eq!(normalize("localhost:5000/busybox"), "localhost:5000/busybox:latest");
        assert_eq!(normalize("localhost:5000/a/b:2"), "localhost:5000/a/b:2");
        assert_eq!(normalize("x@sha256:ab"), "x@sha256:ab");
        assert!(check_name("bad name").is_err() && check_name("").is_err());
    }

    fn entry(name: &str, m: &str) -> Entry {
        let image = Image {
            name: name.into(),
            manifest_digest: m.into(),
            config_digest: String::new(),
            config: RunConfig::default(),
            size: 0,
        };
        Entry { image, layers: vec![] }
    }

    #[test]
    fn short_names_resolve() {
        let mut idx = IndexFile::default();
        assert!(resolve(&idx, "x").unwrap_err().to_string().contains("empty"));
        idx.images.insert("a:latest".into(), entry("a:latest", "m1"));
        idx.images.insert("localhost:5/bb:latest".into(), entry("localhost:5/bb:latest", "m2"));
        assert_eq!(resolve(&idx, "a").unwrap().image.manifest_digest, "m1");
        assert_eq!(resolve(&idx, "bb").unwrap().image.manifest_digest, "m2");
        let e = resolve(&idx, "zz").unwrap_err().to_string();
        assert!(e.contains("a:latest") && e.contains("localhost:5/bb:latest"), "{e}");
        idx.images.insert("127.0.0.1:5/bb:latest".into(), entry("127.0.0.1:5/bb:latest", "m3"));
        assert!(resolve(&idx, "bb").unwrap_err().to_string().contains("ambiguous"));
    }
}
