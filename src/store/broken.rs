//! Records that fail alone: a record file that cannot be read (torn by a
//! crash, emptied by a full disk, edited by hand) is reported with its path
//! and cause, and every other record of its kind is still listed. Whoever
//! needs that one record fails with the same line; whoever does not, goes on.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record that could not be read: what it is, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// "network", "endpoint", "lease", "container", "pod", "service", "node", "cluster".
    pub kind: &'static str,
    /// The name the record goes by, as far as its path tells it.
    pub name: String,
    pub path: PathBuf,
    pub cause: String,
    /// Inode and size when it was found broken: `remove_broken` removes that
    /// file only, never one written whole since (writes are atomic renames).
    #[serde(skip)]
    seen: Option<(u64, u64)>,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: record {} is unreadable: {}", self.kind, self.name, self.path.display(), self.cause)
    }
}

impl Broken {
    pub fn new(kind: &'static str, name: impl Into<String>, path: &Path, cause: impl Into<String>) -> Broken {
        let seen = fs::symlink_metadata(path).ok().map(|m| (m.ino(), m.len()));
        Broken { kind, name: name.into(), path: path.to_path_buf(), cause: cause.into(), seen }
    }

    /// The error of a command that needs this record.
    pub fn error(&self) -> anyhow::Error {
        anyhow::anyhow!("{self}")
    }
}

/// The records of one kind that could be read, and those that could not.
#[derive(Debug)]
pub struct Listing<T> {
    pub good: Vec<T>,
    pub broken: Vec<Broken>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing { good: Vec::new(), broken: Vec::new() }
    }
}

/// One record file read.
#[derive(Debug)]
pub enum Read<T> {
    Good(T),
    /// Not there (never made, or removed meanwhile): not an error for a lister.
    Gone,
    /// There, but unreadable: the cause.
    Bad(String),
}

/// Read and parse the JSON record at `path`, telling "gone" from "broken".
/// A record that does not parse is read once more a moment later before it
/// is called broken: `Records::finish` rewrites one in place, and a read
/// racing that write can see a mix of the two versions.
pub fn read_record<T: DeserializeOwned>(path: &Path) -> Read<T> {
    match read_once(path) {
        Read::Bad(_) => {
            std::thread::sleep(std::time::Duration::from_millis(1));
            read_once(path)
        }
        r => r,
    }
}

fn read_once<T: DeserializeOwned>(path: &Path) -> Read<T> {
    match fs::read(path) {
        Ok(data) => match super::parse_json(&data) {
            Ok(v) => Read::Good(v),
            Err(cause) => Read::Bad(cause),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Read::Gone,
        Err(e) => Read::Bad(e.to_string()),
    }
}

/// Remove a broken record file (`gc --remove-broken`): the very file that
/// was found broken, not one written whole in its place since. Returns
/// whether it was removed.
pub fn remove_broken(b: &Broken) -> Result<bool> {
    let now = fs::symlink_metadata(&b.path).ok().filter(|m| !m.is_dir()).map(|m| (m.ino(), m.len()));
    if now.is_none() || now != b.seen {
        return Ok(false);
    }
    fs::remove_file(&b.path).with_context(|| format!("removing {}", b.path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_empty_and_missing_records_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("net1.json");
        fs::write(&p, r#"{"name": "net1", "subn"#).unwrap();
        let Read::Bad(cause) = read_record::<serde_json::Value>(&p) else { panic!("a torn record read") };
        assert!(cause.contains("EOF while parsing"), "{cause}");
        fs::write(&p, "").unwrap();
        assert!(matches!(read_record::<serde_json::Value>(&p), Read::Bad(_)));
        assert!(matches!(read_record::<serde_json::Value>(&d.path().join("x.json")), Read::Gone));
        let b = Broken::new("network", "net1", &p, cause);
        assert!(b.to_string().starts_with(&format!("network net1: record {} is unreadable: EOF", p.display())));
    }

    #[test]
    fn remove_broken_leaves_a_record_written_since() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        fs::write(&p, "{").unwrap();
        let b = Broken::new("service", "s", &p, "torn");
        crate::store::write_json(&p, &serde_json::json!({"name": "s"})).unwrap();
        assert!(!remove_broken(&b).unwrap());
        assert!(p.exists());
        let b = Broken::new("service", "s", &p, "torn");
        assert!(remove_broken(&b).unwrap());
        assert!(!p.exists());
    }
}
