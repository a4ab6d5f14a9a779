//! A directory of named JSON records (`<dir>/<name>.json`), changed under an
//! flock on `<dir>/.lock`: the store of networks, services, pods and peers.
//! A record that cannot be read fails alone (see `super::broken`).

use std::fs;
use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::{Broken, Listing, Read};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record [`Records::create`] made, kept open for the one rewrite that
/// completes it ([`Records::finish`]).
pub struct Made {
    file: fs::File,
    len: usize,
}

/// The largest record `finish` writes in place: one page, which a kill
/// cannot tear (the kernel copies a write page by page, checking for a
/// fatal signal between pages).
const IN_PLACE_MAX: usize = 4096;

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

    /// One record; a missing one is named with the others, a broken one by its path and cause.
    pub fn get(&self, name: &str) -> Result<T> {
        super::validate_id(&format!("{} name", self.kind), name)?;
        let p = self.path(name);
        match super::read_record(&p) {
            Read::Good(r) => Ok(r),
            Read::Bad(cause) => Err(Broken::new(self.kind, name, &p, cause).error()),
            Read::Gone => {
                let known = self.names();
                let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                Err(crate::error::Error::NotFound(format!(
                    "{} {name:?} does not exist ({}s: {known})",
                    self.kind, self.kind
                ))
                .into())
            }
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Every record that can be read, by name (none yet: empty); the broken
    /// ones are left out (see `scan`).
    pub fn list(&self) -> Result<Vec<T>> {
        Ok(self.scan()?.good)
    }

    /// Every record by name, and those that cannot be read.
    pub fn scan(&self) -> Result<Listing<T>> {
        let mut out = Listing::default();
        for name in self.names() {
            let p = self.path(&name);
            match super::read_record(&p) {
                Read::Good(r) => out.good.push(r),
                Read::Bad(cause) => out.broken.push(Broken::new(self.kind, name, &p, cause)),
                Read::Gone => {} // removed meanwhile
            }
        }
        out.good.sort_by(|a: &T, b: &T| a.name().cmp(b.name()));
        Ok(out)
    }

    /// The names of every record, readable or not, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            // Dot files are the lock and write_atomic's temporaries.
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".json").map(String::from))
            .collect();
        names.sort();
        names
    }

    /// Save a record that does not exist yet, for a caller that holds the lock and looked: one
    /// metadata operation, where `save` takes two (a temporary and its rename). The record is
    /// written with one write, so a crash leaves it whole or, killed between its creation and that
    /// write (fault point `KIND:created`), empty, which [`Records::remove_empty`] recognises.
    pub fn create(&self, record: &T) -> Result<Made> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let p = self.path(record.name());
        let data = serde_json::to_vec_pretty(record)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        super::fault(&format!("{}:created", self.kind));
        std::io::Write::write_all(&mut f, &data).with_context(|| format!("writing {}", p.display()))?;
        Ok(Made { file: f, len: data.len() })
    }

    /// Replace a record made by [`Records::create`] with its final version, in place with one
    /// write when it fits in a page: no temporary and rename (`save`'s two metadata operations,
    /// most of a pod create's state cost on a disk). A shorter version is padded with spaces,
    /// which JSON allows after the value, so what is left of the longer one never shows. A
    /// reader racing the write may see a mix of the two; `read_record` reads again before it
    /// calls a record broken. A larger record is saved as `save` does.
    /// If another command replaced or removed the record meanwhile (a `pod stop` saves it whole),
    /// the made file is no longer the record: the final version is saved as `save` does, as it
    /// was before this shortcut, rather than written into a file no one reads.
    pub fn finish(&self, made: Made, record: &T) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut data = serde_json::to_vec_pretty(record)?;
        let ino = |m: std::io::Result<fs::Metadata>| m.ok().map(|m| (m.dev(), m.ino()));
        let still = ino(made.file.metadata()) == ino(fs::metadata(self.path(record.name())));
        if data.len() > IN_PLACE_MAX || !still {
            return self.save(record);
        }
        if data.len() < made.len {
            data.resize(made.len, b' ');
        }
        std::os::unix::fs::FileExt::write_all_at(&made.file, &data, 0)
            .with_context(|| format!("writing {}", self.path(record.name()).display()))
    }

    /// Remove the records left empty by a `create` killed before its write; returns their names.
    /// The caller holds the lock, which the create held from before its file existed until after
    /// its write, so an empty record seen under it belongs to no one.
    pub fn remove_empty(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in self.names() {
            if fs::metadata(self.path(&name)).is_ok_and(|m| m.len() == 0) {
                self.remove(&name)?;
                removed.push(name);
            }
        }
        Ok(removed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    struct Net {
        name: String,
        subnet: String,
    }

    impl Named for Net {
        fn name(&self) -> &str {
            &self.name
        }
    }

    #[test]
    fn create_refuses_an_existing_record_and_gc_takes_only_empty_ones() {
        let d = tempfile::tempdir().unwrap();
        let st: Records<Net> = Records::new(d.path().to_path_buf(), "network");
        let net = |n: &str| Net { name: n.into(), subnet: "10.0.0.0/24".into() };
        st.create(&net("a")).unwrap();
        assert_eq!(st.get("a").unwrap(), net("a"));
        assert!(st.create(&net("a")).is_err(), "a second create of the same record");
        // A create killed between its file's creation and its write.
        fs::write(d.path().join("b.json"), b"").unwrap();
        assert_eq!(st.remove_empty().unwrap(), ["b"]);
        assert_eq!(st.names(), ["a"]);
    }

    /// `finish` rewrites the made record in place: the same file, the final
    /// version whole whether it is shorter or longer than the first, and a
    /// version larger than a page through `save`.
    #[test]
    fn finish_rewrites_the_made_record_in_place() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let st: Records<Net> = Records::new(d.path().to_path_buf(), "network");
        let path = d.path().join("a.json");
        let ino = || fs::metadata(&path).unwrap().ino();
        for subnet in ["10.0.0.0/24", "x".repeat(200).as_str(), "s", &"y".repeat(5000)] {
            let _ = fs::remove_file(&path);
            let first = Net { name: "a".into(), subnet: "192.168.100.0/24".into() };
            let made = st.create(&first).unwrap();
            let before = ino();
            let last = Net { name: "a".into(), subnet: subnet.into() };
            st.finish(made, &last).unwrap();
            assert_eq!(st.get("a").unwrap(), last, "{subnet}");
            assert_eq!(ino() == before, subnet.len() < 4000, "in place only within a page: {subnet}");
        }
        // Replaced meanwhile (another command's save): the final version still lands in the record.
        let _ = fs::remove_file(&path);
        let made = st.create(&Net { name: "a".into(), subnet: "1".into() }).unwrap();
        st.save(&Net { name: "a".into(), subnet: "2".into() }).unwrap();
        let last = Net { name: "a".into(), subnet: "3".into() };
        st.finish(made, &last).unwrap();
        assert_eq!(st.get("a").unwrap(), last);
    }

    #[test]
    fn one_torn_record_fails_alone() {
        let d = tempfile::tempdir().unwrap();
        let st: Records<Net> = Records::new(d.path().to_path_buf(), "network");
        for n in ["net1", "net2"] {
            st.save(&Net { name: n.into(), subnet: "10.0.0.0/24".into() }).unwrap();
        }
        let torn = d.path().join("net1.json");
        fs::write(&torn, r#"{"name": "net1", "subn"#).unwrap();
        let all = st.scan().unwrap();
        assert_eq!(all.good.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["net2"]);
        assert_eq!((all.broken[0].name.as_str(), all.broken[0].path.as_path()), ("net1", torn.as_path()));
        assert_eq!(st.list().unwrap().len(), 1);
        assert_eq!(st.names(), ["net1", "net2"]);
        assert!(st.get("net2").is_ok());
        let err = st.get("net1").unwrap_err().to_string();
        assert!(err.starts_with(&format!("network net1: record {} is unreadable: EOF", torn.display())), "{err}");
        let err = st.get("net3").unwrap_err().to_string();
        assert!(err.contains("(networks: net1, net2)"), "{err}");
    }
}
