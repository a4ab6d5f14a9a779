//! A directory of named JSON records (`<dir>/<name>.json`), changed under an
//! flock on `<dir>/.lock`: the store of networks and of services.

use std::fs;
use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a record is called by.
pub trait Named {
    fn name(&self) -> &str;
}

pub struct Records<T> {
    dir: PathBuf,
    /// "network", "service": for messages.
    kind: &'static str,
    _t: PhantomData<T>,
}

impl<T: Named + Serialize + DeserializeOwned> Records<T> {
    pub fn new(dir: PathBuf, kind: &'static str) -> Records<T> {
        Records { dir, kind, _t: PhantomData }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Serialises the changes of these records.
    pub fn lock(&self) -> Result<super::Lock> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        super::lock(&self.dir.join(".lock"))
    }

    pub fn get(&self, name: &str) -> Result<T> {
        super::validate_id(&format!("{} name", self.kind), name)?;
        let p = self.path(name);
        if !p.exists() {
            let known: Vec<String> = self.list()?.iter().map(|r| r.name().to_string()).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            bail!("{} {name:?} does not exist ({}s: {known})", self.kind, self.kind);
        }
        super::read_json(&p)
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Every record, by name (none yet: empty).
    pub fn list(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&self.dir) else { return Ok(out) };
        for e in rd.flatten() {
            let p = e.path();
            // Dot files are the lock and write_atomic's temporaries.
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if !hidden && p.extension().is_some_and(|x| x == "json") {
                out.push(super::read_json(&p)?);
            }
        }
        out.sort_by(|a: &T, b: &T| a.name().cmp(b.name()));
        Ok(out)
    }

    pub fn save(&self, record: &T) -> Result<()> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        super::write_json(&self.path(record.name()), record)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        match fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing the {} record", self.kind))
            }
            _ => Ok(()),
        }
    }

    /// Whether the directory exists at all (a cheap "none yet").
    pub fn any_dir(&self) -> bool {
        self.dir.exists()
    }
}
