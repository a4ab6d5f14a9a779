//! Reading an archive into staging: an OCI image layout (dir, tar or
//! tar.gz) or a `docker save` archive (manifest.json + config + layer tars).
//! Every blob is copied in with its digest checked, then unpacked.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::{check_name, digest, manifest, unpack, Prepared, Staging, Store};

pub(super) fn read(store: &Store, st: &Staging, src: &Path, name: Option<&str>) -> Result<Vec<Prepared>> {
    let meta = fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let dir: PathBuf = if meta.is_dir() {
        src.to_path_buf()
    } else {
        let out = st.dir.join("src");
        fs::create_dir(&out)?;
        extract(src, &out)?;
        out
    };
    let name = name.map(check_name).transpose()?;
    if dir.join("manifest.json").is_file() {
        docker(store, st, &dir, name)
    } else if dir.join("index.json").is_file() {
        oci(store, st, &dir, name)
    } else {
        bail!("neither an OCI image layout (index.json) nor a docker save archive (manifest.json)")
    }
}

/// Unpack the outer tar (maybe gzipped); tar's `unpack` refuses `..`.
fn extract(src: &Path, out: &Path) -> Result<()> {
    let mut ar = tar::Archive::new(unpack::open_layer(src)?);
    ar.set_preserve_permissions(false);
    // tar's own message names our staging paths: say what is wrong instead.
    ar.unpack(out).map_err(|e| {
        let all = format!("{:#}", anyhow::Error::from(e));
        let why = if all.contains("entire") || all.contains("unexpected end") { "truncated" } else { "corrupt" };
        anyhow::anyhow!("not a readable tar archive ({why})")
    })
}

fn oci(store: &Store, st: &Staging, dir: &Path, name: Option<String>) -> Result<Vec<Prepared>> {
    let blob = |d: &str| -> Result<PathBuf> { Ok(dir.join("blobs/sha256").join(digest::hex(d)?)) };
    let index = manifest::parse_index(&fs::read(dir.join("index.json"))?)?;
    let mut out = Vec::new();
    let mut descs = index.manifests.clone();
    if name.is_some() && descs.len() > 1 {
        // One name can only go to one image: prefer this platform's.
        descs = manifest::pick_platform(&index.manifests).cloned().into_iter().collect();
        if descs.is_empty() {
            bail!("the layout holds {} images; import it without a name", index.manifests.len());
        }
    }
    if descs.is_empty() {
        bail!("index.json lists no image");
    }
    for mut d in descs {
        let names = match &name {
            Some(n) => vec![n.clone()],
            None => vec![layout_name(&d)?],
        };
        if manifest::is_index(&d.media_type) {
            copy_blob(st, &blob(&d.digest)?, &d)?;
            let inner = manifest::parse_index(&fs::read(st.blob_path(&d.digest)?)?)?;
            d = manifest::pick_platform(&inner.manifests)
                .cloned()
                .with_context(|| format!("no linux/{} image in index {}", std::env::consts::ARCH, d.digest))?;
        }
        copy_blob(st, &blob(&d.digest)?, &d)?;
        let m = manifest::parse_manifest(&fs::read(st.blob_path(&d.digest)?)?)?;
        for b in std::iter::once(&m.config).chain(&m.layers) {
            copy_blob(st, &blob(&b.digest)?, b)?;
        }
        out.push(st.prepare(store, &d.digest, names)?);
    }
    Ok(out)
}

/// The name an OCI layout gives an image: containerd's full name, else a
/// `ref.name` that is a whole reference (a bare tag says nothing of the repo).
fn layout_name(d: &manifest::Desc) -> Result<String> {
    let full = d.annotations.get("io.containerd.image.name");
    let r = d.annotations.get("org.opencontainers.image.ref.name").filter(|r| r.contains(['/', ':']));
    match full.or(r) {
        Some(n) => check_name(n),
        None => bail!("image {} has no name in the layout; give one: rcon image import PATH NAME", d.digest),
    }
}

fn copy_blob(st: &Staging, src: &Path, d: &manifest::Desc) -> Result<()> {
    let dst = st.blob_path(&d.digest)?;
    if !dst.exists() {
        digest::copy_verified(src, &dst, &d.digest, d.size)?;
    }
    Ok(())
}

/// `docker save`: the layers are plain tars named by path, so their digests
/// are computed here and an OCI manifest is written for them.
fn docker(store: &Store, st: &Staging, dir: &Path, name: Option<String>) -> Result<Vec<Prepared>> {
    let entries = manifest::parse_docker(&fs::read(dir.join("manifest.json"))?)?;
    if name.is_some() && entries.len() > 1 {
        bail!("the archive holds {} images; import it without a name", entries.len());
    }
    let mut out = Vec::new();
    for e in entries {
        let names = match &name {
            Some(n) => vec![n.clone()],
            None => {
                let tags = e.repo_tags.clone().unwrap_or_default();
                if tags.is_empty() {
                    bail!("image {} has no RepoTags; give a name: rcon image import PATH NAME", e.config);
                }
                tags.iter().map(|t| check_name(t)).collect::<Result<_>>()?
            }
        };
        let (config, csize) = hash_in(st, &inside(dir, &e.config)?)?;
        // docker names the config after its digest: hold it to that.
        let stem = e.config.trim_end_matches(".json").rsplit('/').next().unwrap_or_default();
        if digest::hex(&format!("sha256:{stem}")).is_ok() && config != format!("sha256:{stem}") {
            bail!("digest mismatch for {}: its content is {config}", e.config);
        }
        let mut layers = Vec::new();
        for l in &e.layers {
            layers.push(hash_in(st, &inside(dir, l)?)?);
        }
        let m = manifest::synth_manifest((&config, csize), &layers);
        let md = digest::of_bytes(&m);
        fs::write(st.blob_path(&md)?, &m)?;
        out.push(st.prepare(store, &md, names)?);
    }
    Ok(out)
}

/// A path named by manifest.json, refused if it climbs out of the archive.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf> {
    if Path::new(rel).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        bail!("bad path {rel:?} in manifest.json");
    }
    Ok(dir.join(rel))
}

/// Copy a file into staging under its own digest; returns (digest, size).
fn hash_in(st: &Staging, src: &Path) -> Result<(String, u64)> {
    let f = fs::File::open(src).with_context(|| format!("{} is missing from the archive", src.display()))?;
    let mut r = digest::Hashing::new(f);
    let tmp = st.dir.join("incoming");
    std::io::copy(&mut r, &mut fs::File::create(&tmp)?)?;
    let n = r.count;
    let d = r.finish()?;
    fs::rename(&tmp, st.blob_path(&d)?)?;
    Ok((d, n))
}
