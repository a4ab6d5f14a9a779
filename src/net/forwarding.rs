//! `net.ipv4.ip_forward` in the namespace rcon manages: on while some network needs it, and put back as it
//! was when the last one goes.
//!
//! The record, `<data_root>/forwarding.json`, holds the value found before rcon first turned forwarding on
//! and the networks that need it. It is written before the sysctl changes, so a crash never leaves forwarding
//! on with nothing saying why, and every read-modify-write happens under an flock on
//! `<data_root>/forwarding.lock`, so concurrent rcon processes agree. The sysctl is the calling thread's
//! (`/proc/sys/net` follows the thread's network namespace): call from a thread inside the namespace.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::store;

const SYSCTL: &str = "/proc/sys/net/ipv4/ip_forward";

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

fn read_sysctl() -> Result<String> {
    Ok(fs::read_to_string(SYSCTL).with_context(|| format!("reading {SYSCTL}"))?.trim().to_string())
}

fn write_sysctl(value: &str) -> Result<()> {
    fs::write(SYSCTL, value).with_context(|| format!("writing {value} to {SYSCTL}"))
}

/// Turn net.ipv4.ip_forward on in the calling thread's netns, recording under `data_root` (e.g. data_root/forwarding.json)
/// its previous value and which networks need it. `enable(data_root, net_name)`; `release(data_root, net_name)` forgets
/// the network and, when none remain, restores the recorded previous value and removes the record. Both idempotent and
/// safe across concurrent rcon processes (use crate::store::lock for an flock, store::write_json/read_json).
pub fn enable(data_root: &Path, net: &str) -> Result<()> {
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
            Record { previous: read_sysctl()?, networks: BTreeSet::new() }
        };
        if rec.networks.insert(net.to_string()) {
            store::write_json(&record, &rec)?;
        }
        // Also when the network was recorded: turning it on again is harmless and repairs a reset sysctl.
        if read_sysctl()? != "1" {
            write_sysctl("1")?;
        }
        Ok(())
    };
    run().with_context(|| format!("enabling ip_forward for network {net}"))
}

/// See [`enable`].
pub fn release(data_root: &Path, net: &str) -> Result<()> {
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
            if read_sysctl()? != rec.previous {
                write_sysctl(&rec.previous)?;
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
        release(dir.path(), "a").unwrap();
        release(&dir.path().join("missing"), "a").unwrap();
        assert!(!dir.path().join("missing").exists());
    }
}
