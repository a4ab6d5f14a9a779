//! Making a container's groups and writing its settings into them. Only
//! the groups rcon makes are written to, with two exceptions runc makes
//! too, both needed for the group to work at all: an empty v1 cpuset on the
//! way down is filled from its parent, and a v2 controller the container
//! needs is enabled in the subtree_control of the root and the groups
//! between it and the container's (enabling moves and limits nothing).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::resources::Write;

/// Make `path` under `mount` (a v1 `controller` hierarchy), filling empty
/// cpusets from the parent as v1 requires before a task may join.
pub fn make_v1(mount: &Path, path: &Path, controller: &str) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating cgroup {}", path.display()))?;
    if controller == "cpuset" {
        for dir in below(mount, path) {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = fs::read_to_string(dir.join(file)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let parent = dir.parent().unwrap_or(mount);
                    let theirs = fs::read_to_string(parent.join(file))
                        .with_context(|| format!("reading {}", parent.join(file).display()))?;
                    fs::write(dir.join(file), theirs.trim())
                        .with_context(|| format!("copying {file} into {}", dir.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Enable each of `controllers` in every group from the cgroup2 root down
/// to `path`'s parent, where it is not enabled yet.
pub fn enable_v2(mount: &Path, path: &Path, controllers: &[&str]) -> Result<()> {
    // The root included, as runc and crun do without systemd: enabling a
    // controller for the root's children only adds its files there (every
    // limit starts at "max"); no process is moved or limited. Never the
    // container's own dir, which holds processes.
    let mut dirs = vec![mount.to_path_buf()];
    dirs.extend(below(mount, path));
    for dir in dirs.iter().take(dirs.len().saturating_sub(1)) {
        let on = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        for c in controllers.iter().filter(|c| **c != "cgroup" && !on.split_whitespace().any(|o| o == **c)) {
            fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"))
                .with_context(|| format!("enabling the {c} controller in {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The dirs from just below `mount` down to `path`, outermost first.
fn below(mount: &Path, path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        path.ancestors().take_while(|d| *d != mount && d.starts_with(mount)).map(Path::to_path_buf).collect();
    out.reverse();
    out
}

/// Write each setting into `dir`. A file the kernel does not offer there is
/// the host lacking the feature: one error naming the field and the file.
pub fn write_all<'a>(dir: &Path, writes: impl IntoIterator<Item = &'a Write>) -> Result<()> {
    for w in writes {
        let file = present(dir, &w.file).ok_or_else(|| {
            anyhow::anyhow!(
                "config.json: field linux.resources.{}: this host has no {} in {}{}",
                w.field,
                w.file,
                dir.display(),
                hint(&w.file)
            )
        })?;
        if let Err(e) = fs::write(dir.join(&file), &w.value) {
            // The kernel looks the name up in the initial network namespace, whatever the writer's.
            let why = match (file.as_str(), e.raw_os_error()) {
                ("net_prio.ifpriomap", Some(libc::ENODEV)) => " (net_prio knows only the host's own interfaces)",
                _ => "",
            };
            bail!("config.json: field linux.resources.{}: writing {:?} to {file}: {e}{why}", w.field, w.value);
        }
    }
    Ok(())
}

/// The file to write: v1 blkio weights are under blkio.bfq.* when BFQ
/// is the scheduler (as runc falls back).
fn present(dir: &Path, file: &str) -> Option<String> {
    if dir.join(file).exists() {
        return Some(file.into());
    }
    let bfq = file.strip_prefix("blkio.weight").map(|rest| format!("blkio.bfq.weight{rest}"))?;
    dir.join(&bfq).exists().then_some(bfq)
}

/// Why a file is missing, where the cause is known.
fn hint(file: &str) -> &'static str {
    match file {
        f if f.starts_with("memory.memsw") || f == "memory.swap.max" => " (swap accounting is off)",
        f if f.starts_with("cpu.rt_") => " (the kernel lacks CONFIG_RT_GROUP_SCHED)",
        f if f.starts_with("blkio.weight") || f.starts_with("blkio.leaf_weight") || f == "io.weight" => {
            " (no proportional weights: the block scheduler is not BFQ)"
        }
        f if f.starts_with("hugetlb.") => " (no such huge page size)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_below_the_mount() {
        let m = Path::new("/sys/fs/cgroup/cpuset");
        assert_eq!(
            below(m, Path::new("/sys/fs/cgroup/cpuset/rcon/c1")),
            [PathBuf::from("/sys/fs/cgroup/cpuset/rcon"), PathBuf::from("/sys/fs/cgroup/cpuset/rcon/c1")]
        );
        assert!(below(m, m).is_empty());
    }

    #[test]
    fn missing_files_name_the_field_and_the_cause() {
        let dir = std::env::temp_dir().join(format!("rcon-cg-apply-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("blkio.bfq.weight"), "").unwrap();
        let w = |file: &str, field: &str| Write {
            version: super::super::resources::Version::V1,
            controller: "blkio".into(),
            file: file.into(),
            value: "500".into(),
            field: field.into(),
        };
        write_all(&dir, [&w("blkio.weight", "blockIO.weight")]).unwrap();
        assert_eq!(fs::read_to_string(dir.join("blkio.bfq.weight")).unwrap(), "500");
        let e = write_all(&dir, [&w("memory.memsw.limit_in_bytes", "memory.swap")]).unwrap_err().to_string();
        assert!(e.starts_with("config.json: field linux.resources.memory.swap: this host has no memory.memsw"), "{e}");
        assert!(e.ends_with("(swap accounting is off)"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
