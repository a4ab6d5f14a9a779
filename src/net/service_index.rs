//! Two indexes beside the service records, so that no service command and
//! no detach reads every record:
//!
//! ```text
//! <data-root>/services/index/
//!     vip/<ip>/<proto>-<port> -> NAME    the service on each VIP (a symlink)
//!     backend/<endpoint key>/NAME        the services a container endpoint backs (empty files)
//! ```
//!
//! Both are hints that may say too much, never too little: an entry is made
//! before the record that needs it is saved and removed after the record no
//! longer does, all under the service store's lock. A reader checks an
//! entry against the record it names (one read), so an entry left by a crash
//! is harmless, and gc sweeps such entries. The index of a data root written
//! by an older rcon is built once, from every record, in a directory of its
//! own that is renamed into place whole.

use std::fs;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::service_store::{self, Service, Store};
use super::service_types::Vip;

const DIR: &str = "index";
const VIP: &str = "vip";
const BACKEND: &str = "backend";

/// The indexes of one data root's services.
pub struct Index {
    root: PathBuf,
}

fn vip_entry(vip: &Vip) -> String {
    format!("{}-{}", vip.proto, vip.port)
}

/// Ignore "not found" (and, for a directory, "not empty").
fn gone(r: std::io::Result<()>, what: &Path) -> Result<()> {
    match r {
        Err(e) if !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty) => {
            Err(e).with_context(|| format!("removing {}", what.display()))
        }
        _ => Ok(()),
    }
}

impl Index {
    /// The index of the services of `data_root`, without looking at it.
    pub fn at(data_root: &Path) -> Index {
        Index { root: service_store::dir(data_root).join(DIR) }
    }

    /// Whether it has been built (a data root of an older rcon has none yet).
    pub fn built(&self) -> bool {
        self.root.is_dir()
    }

    /// The index, built first from every record if it is not yet. Call it holding the store's lock.
    pub fn open(store: &Store, data_root: &Path) -> Result<Index> {
        let idx = Index::at(data_root);
        if idx.built() {
            return Ok(idx);
        }
        let tmp = Index { root: service_store::dir(data_root).join(".index-new") };
        if tmp.root.exists() {
            fs::remove_dir_all(&tmp.root).with_context(|| format!("removing {}", tmp.root.display()))?;
        }
        fs::create_dir_all(tmp.root.join(VIP)).with_context(|| format!("creating {}", tmp.root.display()))?;
        for svc in store.list()? {
            tmp.add(&svc)?;
        }
        fs::rename(&tmp.root, &idx.root).with_context(|| format!("making {}", idx.root.display()))?;
        Ok(idx)
    }

    fn vip_dir(&self, ip: Ipv4Addr) -> PathBuf {
        self.root.join(VIP).join(ip.to_string())
    }

    fn backend_dir(&self, key: &str) -> PathBuf {
        self.root.join(BACKEND).join(key)
    }

    /// The name of the service that the index says holds `vip` (check it against its record).
    pub fn vip_holder(&self, vip: &Vip) -> Option<String> {
        let link = fs::read_link(self.vip_dir(vip.ip).join(vip_entry(vip))).ok()?;
        link.to_str().map(String::from)
    }

    /// The names of the services on `ip`, on any port, `but` this one.
    pub fn on_address(&self, ip: Ipv4Addr, but: &str) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.vip_dir(ip)) else { return Vec::new() };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok()?.to_str().map(String::from))
            .filter(|n| n != but)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether some service may have container endpoint `key` as a backend (one lookup).
    pub fn may_back(&self, key: &str) -> bool {
        self.backend_dir(key).exists()
    }

    /// The services that may have endpoint `key` as a backend.
    pub fn backed_by(&self, key: &str) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.backend_dir(key)) else { return Vec::new() };
        let mut names: Vec<String> = rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        names
    }

    /// The endpoints that some service may have as a backend.
    pub fn backend_keys(&self) -> Vec<String> {
        dirs(&self.root.join(BACKEND)).iter().filter_map(|d| d.file_name()?.to_str().map(String::from)).collect()
    }

    /// The entries `svc` needs: its VIP (replacing a stale entry of a service whose record is gone)
    /// and one per container endpoint among its backends. Before its record is saved; idempotent.
    pub fn add(&self, svc: &Service) -> Result<()> {
        let dir = self.vip_dir(svc.vip.ip);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let link = dir.join(vip_entry(&svc.vip));
        if self.vip_holder(&svc.vip).as_deref() != Some(svc.name.as_str()) {
            gone(fs::remove_file(&link), &link)?;
            symlink(&svc.name, &link).with_context(|| format!("making {}", link.display()))?;
        }
        // Address backends have no entry: no detach takes them away.
        for m in svc.backends.iter().filter(|m| !m.container.is_empty()) {
            let dir = self.backend_dir(&m.endpoint);
            let entry = dir.join(&svc.name);
            if entry.exists() {
                continue;
            }
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            fs::File::create(&entry).with_context(|| format!("making {}", entry.display()))?;
        }
        Ok(())
    }

    /// Forget that service `name` has endpoint `key` as a backend. After its record no longer does.
    pub fn drop_backend(&self, name: &str, key: &str) -> Result<()> {
        let dir = self.backend_dir(key);
        let entry = dir.join(name);
        gone(fs::remove_file(&entry), &entry)?;
        gone(fs::remove_dir(&dir), &dir)
    }

    /// Forget `svc`'s VIP, if the entry names it. After its record is removed.
    pub fn drop_vip(&self, svc: &Service) -> Result<()> {
        if self.vip_holder(&svc.vip).as_deref() != Some(svc.name.as_str()) {
            return Ok(());
        }
        let dir = self.vip_dir(svc.vip.ip);
        let link = dir.join(vip_entry(&svc.vip));
        gone(fs::remove_file(&link), &link)?;
        gone(fs::remove_dir(&dir), &dir)
    }

    /// Forget every entry of `svc`: after its record is removed (or was never saved).
    pub fn forget(&self, svc: &Service) -> Result<()> {
        for m in svc.backends.iter().filter(|m| !m.container.is_empty()) {
            self.drop_backend(&svc.name, &m.endpoint)?;
        }
        self.drop_vip(svc)
    }

    /// gc: the entries that no record backs (left by a crash). Returns how many went.
    pub fn sweep(&self, store: &Store) -> Result<usize> {
        let mut swept = 0;
        let holds =
            |name: &str, f: &dyn Fn(&Service) -> bool| store.exists(name) && store.get(name).is_ok_and(|s| f(&s));
        for ip_dir in dirs(&self.root.join(VIP)) {
            for e in fs::read_dir(&ip_dir).into_iter().flatten().flatten() {
                let target = fs::read_link(e.path()).ok().and_then(|t| t.to_str().map(String::from));
                let entry = e.file_name().into_string().unwrap_or_default();
                let named = |s: &Service| vip_entry(&s.vip) == entry && ip_dir.ends_with(s.vip.ip.to_string());
                // A record that exists but cannot be read keeps its entry.
                if !target.is_some_and(|t| holds(&t, &named) || (store.exists(&t) && store.get(&t).is_err())) {
                    gone(fs::remove_file(e.path()), &e.path())?;
                    swept += 1;
                }
            }
            gone(fs::remove_dir(&ip_dir), &ip_dir)?;
        }
        for key_dir in dirs(&self.root.join(BACKEND)) {
            let key = key_dir.file_name().and_then(|k| k.to_str()).unwrap_or_default().to_string();
            for e in fs::read_dir(&key_dir).into_iter().flatten().flatten() {
                let name = e.file_name().into_string().unwrap_or_default();
                let backs = |s: &Service| s.backends.iter().any(|m| m.endpoint == key);
                if !(holds(&name, &backs) || (store.exists(&name) && store.get(&name).is_err())) {
                    gone(fs::remove_file(e.path()), &e.path())?;
                    swept += 1;
                }
            }
            gone(fs::remove_dir(&key_dir), &key_dir)?;
        }
        Ok(swept)
    }
}

/// The subdirectories of `dir` (none: empty).
fn dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}
