//! A container's writable root: an overlay of the image's shared, read-only
//! unpacked rootfs with a per-container upper dir under
//! `<data-root>/containers/<id>/`. Removing that dir (after unmounting) is
//! the whole cleanup, so it is safe to repeat.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::Context;

pub fn container_dir(ctx: &Context, id: &str) -> PathBuf {
    ctx.data_root.join("containers").join(id)
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
