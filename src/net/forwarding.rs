//! `net.ipv4.ip_forward` in the namespace rcon manages: on while some network needs it, and put back as it
//! was when the last one goes.
//!
//! The record, `<data_root>/forwarding.json`, holds the value found before rcon first turned forwarding on
//! and the networks that need it. It is written before the sysctl changes, so a crash never leaves forwarding
//! on with nothing saying why, and every read-modify-write happens under an flock on
//! `<data_root>/forwarding.lock`, so concurrent rcon processes agree. The sysctl is read and written through
//! `Links`, that of the namespace the handle speaks to.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::links::Links;
use crate::store;

/// The sysctl, under /proc/sys/net of the namespace `links` speaks to.
const SYSCTL: &str = "ipv4/ip_forward";

/// The contents of forwarding.json.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Record {
    /// ip_forward before rcon turned it on ("0" or "1").
    previous: String,
    /// The networks that need forwarding.
    networks: BTreeSet<String>,
}

fn paths(data_root: &Path) -> (PathBuf, PathBuf) {
    (data_root.join("forwarding.json"), data_root.join("forwarding.lock"))
}

/// Turn net.ipv4.ip_forward on in `links`' namespace, recording under `data_root` (e.g. data_root/forwarding.json)
/// its previous value and which networks need it. `enable(links, data_root, net_name)`; `release(links, data_root, net_name)` forgets
/// the network and, when none remain, restores the recorded previous value and removes the record. Both idempotent and
/// safe across concurrent rcon processes (use crate::store::lock for an flock, store::write_json/read_json).
pub fn enable(links: &dyn Links, data_root: &Path, net: &str) -> Result<()> {
    let run = || -> Result<()> {
        if net.is_empty() {
            bail!("empty network name");
        }
        fs::create_dir_all(data_root).with_context(|| format!("creating {}", data_root.display()))?;
        let (record, lock) = paths(data_root);
        let _lock = store::lock(&lock)?;
        let mut rec = if record.exists() {
            store::read_json::<Record>(&record)?
        } else {
            Record { previous: links.sysctl(SYSCTL)?, networks: BTreeSet::new() }
        };
        if rec.networks.insert(net.to_string()) {
            store::write_json(&record, &rec)?;
        }
        // Also when the network was recorded: turning it on again is harmless and repairs a reset sysctl.
        if links.sysctl(SYSCTL)? != "1" {
            links.set_sysctl(SYSCTL, "1")?;
        }
        Ok(())
    };
    run().with_context(|| format!("enabling ip_forward for network {net}"))
}

/// See [`enable`].
pub fn release(links: &dyn Links, data_root: &Path, net: &str) -> Result<()> {
    let run = || -> Result<()> {
        let (record, lock) = paths(data_root);
        if !data_root.exists() {
            return Ok(());
        }
        let _lock = store::lock(&lock)?;
        if !record.exists() {
            return Ok(());
        }
        let mut rec: Record = store::read_json(&record)?;
        if !rec.networks.remove(net) {
            return Ok(());
        }
        if rec.networks.is_empty() {
            if links.sysctl(SYSCTL)? != rec.previous {
                links.set_sysctl(SYSCTL, &rec.previous)?;
            }
            fs::remove_file(&record).with_context(|| format!("removing {}", record.display()))
        } else {
            store::write_json(&record, &rec)
        }
    };
    run().with_context(|| format!("releasing ip_forward for network {net}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("forwarding.json");
        let rec = Record { previous: "0".into(), networks: ["a".to_string(), "b".to_string()].into() };
        store::write_json(&p, &rec).unwrap();
        assert_eq!(store::read_json::<Record>(&p).unwrap(), rec);
    }

    #[test]
    fn release_without_record_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let links = crate::net::testing::FakeLinks::new();
        release(&links, dir.path(), "a").unwrap();
        release(&links, &dir.path().join("missing"), "a").unwrap();
        assert!(!dir.path().join("missing").exists());
    }
}
