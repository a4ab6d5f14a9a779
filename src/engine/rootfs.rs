//! A container's writable root: an overlay of the image's shared, read-only
//! unpacked rootfs with a per-container upper dir under
//! `<data-root>/containers/<id>/`. Removing that dir (after unmounting) is
//! the whole cleanup, so it is safe to repeat.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::runtime::state::Creator;
use crate::Context;

pub fn container_dir(ctx: &Context, id: &str) -> PathBuf {
    ctx.data_root.join("containers").join(id)
}

/// Make a container's data dir with its creator record already inside:
/// made under a name that carries the creator (`.new-PID-START-ID`), then
/// renamed. So gc never sees `<id>` without knowing who is making it, and
/// reads the creator of a crashed run's leftover from its name. Returns the
/// dir and the creator's hold on it (see `Creating`), taken before the rename.
pub fn create_dir(ctx: &Context, id: &str, creator: &Creator) -> Result<(PathBuf, Creating)> {
    let parent = ctx.data_root.join("containers");
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(creator.new_dir_name(id));
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // Not atomic on its own: nothing reads it before the rename below.
    fs::write(tmp.join(CREATOR), serde_json::to_vec(creator)?).context("writing the creator record")?;
    let creating = Creating::hold(&tmp)?;
    let dir = parent.join(id);
    fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok((dir, creating))
}

/// A shared flock on the data dir's creator record, held from the dir's
/// creation until the container is recorded as started (or undone by its
/// maker). It lasts while any process holds the open file (close-on-exec, so
/// no exec'd child keeps it), so a `run -d` monitor forked meanwhile keeps it
/// when the front rcon is killed. Two readers: gc does not take a container
/// from under it (the creator's pid alone would say "gone"), and `rm` waits
/// for it (`wait_made`).
pub struct Creating(#[allow(dead_code)] fs::File);

impl Creating {
    fn hold(dir: &Path) -> Result<Creating> {
        let f = fs::File::open(dir.join(CREATOR)).context("opening the creator record")?;
        // SAFETY: flock on an fd we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) } != 0 {
            return Err(std::io::Error::last_os_error()).context("locking the creator record");
        }
        Ok(Creating(f))
    }
}

/// Whether a process still holds the data dir's creator record.
pub fn creator_held(dir: &Path) -> bool {
    let Ok(f) = fs::File::open(dir.join(CREATOR)) else { return false };
    // SAFETY: flock on an fd we own; closing it (drop) releases our probe.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

/// How long `wait_made` waits by default; `RCON_CREATE_WAIT` (seconds) sets it.
pub const CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Wait until no process holds the data dir's creator record: the run that
/// makes its container has recorded it as started, undone it, or died. The
/// lock returned keeps a second remover waiting until this one is done.
/// None when there is no record: no engine run makes anything there. A run
/// that holds it longer than `limit` (stopped, or a hook that hangs) is an
/// error naming it, not a remover that hangs with it.
pub fn wait_made(dir: &Path, limit: std::time::Duration) -> Result<Option<crate::store::Lock>> {
    let f = match fs::File::open(dir.join(CREATOR)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("opening the creator record"),
    };
    let creator = fs::read(dir.join(CREATOR)).ok().and_then(|b| serde_json::from_slice::<Creator>(&b).ok());
    // Blocking in flock(2) on a thread, so that the wait shows in /proc/locks as any lock wait
    // does, and is given up at the limit; a lock got after that is dropped with the channel.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(crate::store::lock_file(f));
    });
    match rx.recv_timeout(limit) {
        Ok(lock) => lock.map(Some).context("waiting for the run that makes the container"),
        Err(_) => bail!(
            "the run making this container ({}, or a monitor it forked) still holds it after {} s: \
             is it stopped? Remove it again once that run is done or killed (RCON_CREATE_WAIT sets \
             the wait)",
            creator.map_or("rcon pid unknown".to_string(), |c| format!("rcon pid {}", c.pid)),
            limit.as_secs_f64()
        ),
    }
}

/// The wait `RCON_CREATE_WAIT` asks for (seconds), else [`CREATE_WAIT`].
pub fn create_wait() -> Result<std::time::Duration> {
    match std::env::var("RCON_CREATE_WAIT") {
        Err(_) => Ok(CREATE_WAIT),
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(std::time::Duration::from_secs_f64)
            .with_context(|| format!("RCON_CREATE_WAIT={v:?}: seconds to wait, a number such as 30 or 0.5")),
    }
}

/// The prefix of a data dir still being made.
pub const NEW: &str = crate::runtime::state::NEW_DIR;
/// The record of the rcon making a container.
pub const CREATOR: &str = "creator";

/// The creator named by a `.new-PID-START-ID` dir, if `name` is one.
pub fn new_dir_creator(name: &str) -> Option<Creator> {
    Creator::of_new_dir(name)
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
    // A detached overlay lives on until its last user is gone (a killed
    // container still exiting) and may write to upper/ and work/ until
    // then, so the removal can meet a directory that filled again: try
    // again for a moment before calling it an error.
    let mut tries = 0;
    loop {
        match fs::remove_dir_all(&dir) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.with_context(|| format!("removing {}", dir.display())),
        }
    }
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
        let (dir, creating) = create_dir(&ctx, "c1", &me).unwrap();
        let back: Creator = serde_json::from_slice(&fs::read(dir.join(CREATOR)).unwrap()).unwrap();
        assert_eq!(back, me);
        let names: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c1")]);
        assert!(creator_held(&dir), "the creator's hold");
        drop(creating);
        assert!(!creator_held(&dir));
        let limit = std::time::Duration::from_millis(200);
        let held = Creating::hold(&dir).unwrap();
        let err = wait_made(&dir, limit).err().expect("a held record times out").to_string();
        assert!(err.contains(&format!("(rcon pid {},", me.pid)) && err.contains("after 0.2 s"), "{err}");
        drop(held);
        assert!(wait_made(&dir, limit).unwrap().is_some());
        assert!(wait_made(&dir.with_file_name("none"), limit).unwrap().is_none());
    }
}
