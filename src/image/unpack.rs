//! Apply layer tars, in order, to a directory: plain entries through tar's
//! `unpack_in` (which refuses `..` and symlinked parents leading outside),
//! whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`) by hand.

use std::collections::HashSet;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::digest::Hashing;

const WH: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What one tar entry means for the rootfs.
#[derive(Debug, PartialEq)]
pub enum Kind {
    /// A regular entry at this relative path.
    Plain(PathBuf),
    /// Delete this relative path from the lower layers.
    Whiteout(PathBuf),
    /// Hide the lower layers' contents of this directory.
    Opaque(PathBuf),
}

/// Map an entry path to its meaning; `..` anywhere is an error.
pub fn classify(path: &Path) -> Result<Kind> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => rel.push(p),
            Component::CurDir | Component::RootDir => {}
            _ => bail!("layer entry {} escapes the rootfs", path.display()),
        }
    }
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(if name == OPAQUE {
        Kind::Opaque(parent)
    } else if let Some(target) = name.strip_prefix(WH) {
        if target.is_empty() || target == "." || target == ".." {
            bail!("bad whiteout entry {}", path.display());
        }
        Kind::Whiteout(parent.join(target))
    } else {
        Kind::Plain(rel)
    })
}

/// Open a layer blob, gunzipping it when it starts with the gzip magic.
pub fn open_layer(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = BufReader::new(fs::File::open(path).with_context(|| format!("opening layer {}", path.display()))?);
    let head = std::io::BufRead::fill_buf(&mut f)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// Apply one layer onto `root`; returns the digest of the uncompressed tar
/// (the config's diff_id), so the caller can check it.
pub fn apply(root: &Path, layer: &Path) -> Result<String> {
    let mut ar = tar::Archive::new(Hashing::new(open_layer(layer)?));
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    // Paths this layer wrote: an opaque marker hides only the lower layers.
    let mut mine: HashSet<PathBuf> = HashSet::new();
    for entry in ar.entries().context("reading the layer tar")? {
        let mut entry = entry.context("reading the layer tar")?;
        let path = entry.path().context("bad entry path")?.into_owned();
        match classify(&path)? {
            Kind::Opaque(dir) => {
                let d = root.join(&dir);
                if is_real_dir(root, &d)? {
                    purge(&d, &dir, &mine)?;
                }
            }
            Kind::Whiteout(target) => remove_inside(root, &root.join(&target))?,
            Kind::Plain(rel) => {
                if rel.as_os_str().is_empty() {
                    continue; // "./" itself
                }
                let dst = root.join(&rel);
                // A file replacing a dir (or the reverse) needs the old one gone first.
                if let Ok(m) = fs::symlink_metadata(&dst) {
                    if m.is_dir() != entry.header().entry_type().is_dir() {
                        remove_inside(root, &dst)?;
                    }
                }
                let ok = entry.unpack_in(root).with_context(|| format!("unpacking {}", rel.display()))?;
                if !ok {
                    bail!("layer entry {} escapes the rootfs", path.display());
                }
                mine.insert(rel);
            }
        }
    }
    Ok(ar.into_inner().finish()?)
}

/// `d` is a directory (not a symlink) whose parent resolves inside `root`.
fn is_real_dir(root: &Path, d: &Path) -> Result<bool> {
    match fs::symlink_metadata(d) {
        Ok(m) if m.is_dir() => {
            check_inside(root, d)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn check_inside(root: &Path, p: &Path) -> Result<()> {
    let parent = p.parent().unwrap_or(root);
    let (Ok(cp), Ok(cr)) = (parent.canonicalize(), root.canonicalize()) else {
        return Ok(()); // nothing there to remove
    };
    if !cp.starts_with(&cr) {
        bail!("whiteout {} resolves outside the rootfs", p.display());
    }
    Ok(())
}

/// Remove `p` (file, link or tree) without following a final symlink and
/// without ever leaving `root` through a symlinked parent.
fn remove_inside(root: &Path, p: &Path) -> Result<()> {
    let Ok(m) = fs::symlink_metadata(p) else {
        return Ok(());
    };
    check_inside(root, p)?;
    if m.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) }
        .with_context(|| format!("removing {}", p.display()))
}

/// Delete what lower layers left in `dir`, keeping what this layer wrote.
fn purge(dir: &Path, rel: &Path, mine: &HashSet<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let crel = rel.join(e.file_name());
        let holds_mine = mine.iter().any(|m| m.starts_with(&crel) && m != &crel);
        if e.file_type()?.is_dir() && holds_mine {
            purge(&e.path(), &crel, mine)?;
        } else if !mine.contains(&crel) {
            let p = e.path();
            if e.file_type()?.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) }
                .with_context(|| format!("removing {}", p.display()))?;
        } else if e.file_type()?.is_dir() {
            purge(&e.path(), &crel, mine)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_paths() {
        assert_eq!(classify(Path::new("./a/b")).unwrap(), Kind::Plain("a/b".into()));
        assert_eq!(classify(Path::new("a/.wh.gone")).unwrap(), Kind::Whiteout("a/gone".into()));
        assert_eq!(classify(Path::new("/d/.wh..wh..opq")).unwrap(), Kind::Opaque("d".into()));
        assert_eq!(classify(Path::new(".wh.top")).unwrap(), Kind::Whiteout("top".into()));
        assert!(classify(Path::new("a/../../etc")).is_err());
        assert!(classify(Path::new("a/.wh...")).is_err());
    }

    fn layer(dir: &Path, name: &str, files: &[&str]) -> PathBuf {
        let p = dir.join(name);
        let mut b = tar::Builder::new(fs::File::create(&p).unwrap());
        for f in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, f, &b"x"[..]).unwrap();
        }
        b.finish().unwrap();
        p
    }

    #[test]
    fn hardlinks_and_escapes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        let p = t.path().join("l");
        let mut b = tar::Builder::new(fs::File::create(&p).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append_data(&mut h.clone(), "a/f", &b"x"[..]).unwrap();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h.clone(), "a/hard", "a/f").unwrap();
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, "out", "/").unwrap();
        b.finish().unwrap();
        drop(b);
        apply(&root, &p).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(root.join("a/hard")).unwrap().ino(), fs::metadata(root.join("a/f")).unwrap().ino());
        // Writing through the absolute symlink would land outside: refused.
        let bad = layer(t.path(), "l2", &["out/tmp/rcon-escape-test"]);
        assert!(apply(&root, &bad).is_err());
        assert!(!Path::new("/tmp/rcon-escape-test").exists());
        // So is deleting through it.
        let victim = t.path().join("victim");
        fs::write(&victim, "v").unwrap();
        let entry = format!("out{}/.wh.victim", t.path().display());
        let wh = layer(t.path(), "l3", &[&entry]);
        assert!(apply(&root, &wh).is_err());
        assert!(victim.exists());
    }

    #[test]
    fn opaque_keeps_same_layer_entries() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        apply(&root, &layer(t.path(), "l1", &["a/keep", "a/gone", "d/x", "d/s/old"])).unwrap();
        // y and s/new come before the marker: they must survive it.
        apply(&root, &layer(t.path(), "l2", &["d/y", "d/s/new", "d/.wh..wh..opq", "a/.wh.gone"])).unwrap();
        assert!(root.join("a/keep").exists() && !root.join("a/gone").exists());
        assert!(root.join("d/y").exists() && root.join("d/s/new").exists());
        assert!(!root.join("d/x").exists() && !root.join("d/s/old").exists());
    }
}
