//! A container's writable root: an overlay of the image's shared, read-only
//! unpacked rootfs with a per-container upper dir under
//! `<data-root>/containers/<id>/`. Removing that dir (after unmounting) is
//! the whole cleanup, so it is safe to repeat.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::runtime::state::Creator;
use crate::Context;

pub fn container_dir(ctx: &Context, id: &str) -> PathBuf {
    ctx.data_root.join("containers").join(id)
}

/// Make a container's data dir with its creator record already inside:
/// made under a name that carries the creator (`.new-PID-START-ID`), then
/// renamed. So gc never sees `<id>` without knowing who is making it, and
/// reads the creator of a crashed run's leftover from its name.
pub fn create_dir(ctx: &Context, id: &str, creator: &Creator) -> Result<PathBuf> {
    let parent = ctx.data_root.join("containers");
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!("{NEW}{}-{}-{id}", creator.pid, creator.start));
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // Not atomic on its own: nothing reads it before the rename below.
    fs::write(tmp.join(CREATOR), serde_json::to_vec(creator)?).context("writing the creator record")?;
    let dir = parent.join(id);
    fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(dir)
}

/// The prefix of a data dir still being made.
pub const NEW: &str = ".new-";
/// The record of the rcon making a container.
pub const CREATOR: &str = "creator";

/// The creator named by a `.new-PID-START-ID` dir, if `name` is one.
pub fn new_dir_creator(name: &str) -> Option<Creator> {
    let mut parts = name.strip_prefix(NEW)?.splitn(3, '-');
    Some(Creator { pid: parts.next()?.parse().ok()?, start: parts.next()?.parse().ok()? })
}

/// Mount the overlay at `<dir>/rootfs` and return that path.
pub fn mount_overlay(dir: &Path, lower: &Path) -> Result<PathBuf> {
    let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &root] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .with_context(|| format!("mounting the container's overlay on {}", root.display()))?;
    Ok(root)
}

/// Unmount the overlay (if mounted) and remove the container's data dir.
pub fn cleanup(ctx: &Context, id: &str) -> Result<()> {
    let dir = container_dir(ctx, id);
    if !dir.exists() {
        return Ok(());
    }
    let root = dir.join("rootfs");
    while umount2(&root, MntFlags::MNT_DETACH).is_ok() {}
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_dir_names_carry_the_creator() {
        assert_eq!(new_dir_creator(".new-42-777-abc-def"), Some(Creator { pid: 42, start: 777 }));
        assert_eq!(new_dir_creator("abcdef"), None);
        assert_eq!(new_dir_creator(".new-x-1-a"), None);
    }

    #[test]
    fn the_dir_appears_with_its_creator() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = Context {
            root: tmp.path().join("run"),
            netns_dir: tmp.path().join("netns"),
            data_root: tmp.path().join("lib"),
            firewall: Default::default(),
        };
        let me = Creator::me();
        let dir = create_dir(&ctx, "c1", &me).unwrap();
        let back: Creator = serde_json::from_slice(&fs::read(dir.join(CREATOR)).unwrap()).unwrap();
        assert_eq!(back, me);
        let names: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c1")]);
    }
}
