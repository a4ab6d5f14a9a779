//! State on disk: atomic writes, advisory locks and id validation.
//!
//! Files are written to a temporary sibling and renamed into place, so a crash
//! never leaves a half-written file; shared state is guarded with flock.

mod broken;
mod records;

pub use broken::{read_record, remove_broken, Broken, Listing, Read};
pub use records::{Made, Named, Records};

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

/// Write `data` to `path` atomically (temp file in the same dir + rename).
/// Readers see the old or the new content, never a mix. Runtime state lives
/// on tmpfs and dies with the machine, so it is not fsynced: use
/// `write_durable` for data that must survive a power cut.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, false)
}

/// Like `write_atomic`, plus fsync before the rename (leases, networks).
pub fn write_durable(path: &Path, data: &[u8]) -> Result<()> {
    write_file(path, data, true)
}

fn write_file(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(".{}.tmp.{}", name, std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing {}", path.display()))
}

/// Write a new file that no one reads yet: one inside a dir that is not yet
/// renamed into place (a create's `.new-` dir). One metadata operation,
/// where `write_atomic` takes two; a crash mid-write leaves a torn file only
/// in a dir that gc removes whole.
pub fn write_new_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value)?;
    let write =
        || -> std::io::Result<()> { OpenOptions::new().write(true).create_new(true).open(path)?.write_all(&data) };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Serialize `value` as pretty JSON and write it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &data)
}

/// Read and parse a JSON file, naming the file and the field on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_json(&data).map_err(|cause| anyhow::anyhow!("{}: {cause}", path.display()))
}

/// Parse JSON; the error is the cause alone, with the field when serde can name it.
fn parse_json<T: serde::de::DeserializeOwned>(data: &[u8]) -> std::result::Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        // "." is the document itself, "?" a place serde could not name (bad syntax).
        if field == "." || field == "?" {
            e.inner().to_string()
        } else {
            format!("field {field}: {}", e.inner())
        }
    })
}

/// An exclusive flock held until dropped.
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// Open (create) a lock file.
fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}

/// Take an exclusive lock on `path` (created if missing), blocking until free.
pub fn lock(path: &Path) -> Result<Lock> {
    lock_file(open_lock(path)?).with_context(|| format!("locking {}", path.display()))
}

/// Take an exclusive lock on `path` if no one holds it; None when someone does.
pub fn try_lock(path: &Path) -> Result<Option<Lock>> {
    match Flock::lock(open_lock(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(Lock(l))),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

pub fn lock_file(f: File) -> Result<Lock> {
    let _ = f.as_fd();
    Flock::lock(f, FlockArg::LockExclusive).map(Lock).map_err(|(_, e)| anyhow::Error::from(e))
}

/// The longest file name the kernel takes (NAME_MAX): every id below is one.
pub const NAME_MAX: usize = 255;

/// Refuse `name` when it is longer than `limit` bytes, saying both numbers
/// and what sets the limit (`why`), instead of the kernel's ENAMETOOLONG or
/// EINVAL later. The name is shown cut short: the line stays one line.
pub fn check_len(what: &str, name: &str, limit: usize, why: &str) -> Result<()> {
    if name.len() > limit {
        let shown: String = name.chars().take(24).collect();
        bail!("{what} \"{shown}…\" is {} bytes; the limit is {limit} ({why})", name.len());
    }
    Ok(())
}

/// Container, namespace and pod names: a safe single path component.
pub fn validate_id(kind: &str, id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_.+-".contains(c);
    if id.is_empty() {
        bail!("{kind} id must not be empty");
    }
    if id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        bail!("invalid {kind} id {id:?}: it must be a single path component, not holding '/' or '..'");
    }
    let what = if kind.ends_with("name") { kind.to_string() } else { format!("{kind} id") };
    check_len(&what, id, NAME_MAX, "a file name")?;
    if !id.chars().all(ok_char) || !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        bail!("invalid {kind} id {id:?}: use letters, digits and _.+- and start with a letter or digit");
    }
    Ok(())
}

/// Crash injection for the fault tests: with RCON_FAULT=POINT in the
/// environment, the process SIGKILLs itself when it reaches POINT, exactly
/// like a `kill -9` landing there. With RCON_FAULT_STOP=POINT it stops
/// itself there (SIGSTOP) instead, so that a root test can act while it is
/// held at that point (kill its caller, run another command) and then
/// SIGCONT it. A no-op otherwise. Unit tests run code there instead
/// ([`at_fault`]), to play what another process does meanwhile.
pub fn fault(point: &str) {
    #[cfg(test)]
    meanwhile::run(point);
    use nix::sys::signal::{raise, Signal};
    for (var, sig) in [("RCON_FAULT", Signal::SIGKILL), ("RCON_FAULT_STOP", Signal::SIGSTOP)] {
        if std::env::var(var).is_ok_and(|v| v == point) {
            let _ = raise(sig);
        }
    }
}

/// Run `f` each time this thread reaches fault point `point`, until the guard is dropped.
#[cfg(test)]
pub fn at_fault(point: &str, f: impl FnMut() + 'static) -> meanwhile::Guard {
    meanwhile::HOOK.with(|h| *h.borrow_mut() = Some((point.to_string(), Box::new(f))));
    meanwhile::Guard
}

#[cfg(test)]
pub mod meanwhile {
    use std::cell::RefCell;

    type Hook = (String, Box<dyn FnMut()>);

    thread_local! {
        // Per thread: the tests that run in parallel do not see each other's.
        pub(super) static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Removes the hook when dropped.
    pub struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            HOOK.with(|h| h.borrow_mut().take());
        }
    }

    pub(super) fn run(point: &str) {
        // Taken out while it runs, so that it may reach fault points itself.
        let Some((p, mut f)) = HOOK.with(|h| h.borrow_mut().take()) else { return };
        if p == point {
            f();
        }
        HOOK.with(|h| {
            h.borrow_mut().get_or_insert((p, f));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("container", "abc-1.2_x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "-x", "a b", "é"] {
            assert!(validate_id("container", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_id("container", &"a".repeat(NAME_MAX)).is_ok());
        let long = validate_id("netns", &"a".repeat(300)).unwrap_err().to_string();
        assert_eq!(long, format!("netns id \"{}…\" is 300 bytes; the limit is 255 (a file name)", "a".repeat(24)));
    }

    #[test]
    fn atomic_json_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_json(&p, &serde_json::json!({"a": 1})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp file left behind");
    }

    #[test]
    fn json_error_names_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            inner: Vec<u32>,
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        fs::write(&p, r#"{"inner": [1, "x"]}"#).unwrap();
        let err = read_json::<S>(&p).unwrap_err().to_string();
        assert!(err.contains("inner[1]"), "{err}");
    }
}
