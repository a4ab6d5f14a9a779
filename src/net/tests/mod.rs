//! Unit tests of the network's logic over the fakes of `net::testing`: no
//! root, no kernel objects, a temporary data root.

mod attach;
mod overlay;
mod services;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::net::firewall::Backend;
use crate::Context;

/// A context whose three roots are under a fresh temporary dir.
fn context() -> (tempfile::TempDir, Context) {
    let d = tempfile::tempdir().unwrap();
    let ctx = Context {
        root: d.path().join("run"),
        netns_dir: d.path().join("netns"),
        data_root: d.path().join("data"),
        firewall: Backend::Nftables,
    };
    (d, ctx)
}

/// Every record under `root`: a file's contents or a symlink's target (the
/// leases and claims are links), by path. Locks, IPAM's cursor (where the
/// next search starts) and empty dirs are left out: they say nothing about
/// what is held.
fn records(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with("lock")
                || (d.parent().is_some_and(|p| p.ends_with("ipam")) && p.ends_with("last"))
            {
                continue;
            } else if ft.is_symlink() {
                out.insert(p.clone(), std::fs::read_link(&p).unwrap().to_string_lossy().into_owned());
            } else {
                out.insert(p.clone(), std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}
