//! Container state: the OCI `state` JSON plus what rcon needs to act later.
//!
//! The status is not stored but derived each time from the process and the
//! start socket, so a crash can never leave a stale "running" on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::store;

pub const OCI_VERSION: &str = "1.2.0";
pub const STATE_FILE: &str = "state.json";
/// Present from create until start: the init waits on it (runc's exec fifo).
pub const START_SOCKET: &str = "start.sock";

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        };
        f.pad(s)
    }
}

/// The OCI state (ociVersion, id, status, pid, bundle, annotations) and rcon's extras.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Kernel start time of `pid` (jiffies since boot), to detect pid reuse.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pid_start_time: u64,
    /// The container has a pid namespace of its own (so it dies with its init).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_pid_ns: bool,
    /// The cgroup that holds every process of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// The rcon process that is creating the container: a container left in
    /// `creating` by a creator that is gone was abandoned, and gc removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
    /// The cgroup v1 groups that carry device rules and the pids limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v1_cgroups: Vec<PathBuf>,
    /// The rootfs, when the container has no mount namespace of its own: its
    /// mounts are then in rcon's, under this path, and delete unmounts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mounts: Option<PathBuf>,
}

/// A process, by pid and kernel start time (so a reused pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub pid: i32,
    pub start: u64,
}

/// The prefix of a dir still being made: `.new-PID-START-NAME` names its
/// creator, so gc can tell a dir being made from a crash's leftover.
pub const NEW_DIR: &str = ".new-";

impl Creator {
    /// `.new-PID-START-NAME`: a dir this creator is making.
    pub fn new_dir_name(&self, name: &str) -> String {
        format!("{NEW_DIR}{}-{}-{name}", self.pid, self.start)
    }

    /// The creator named by a `.new-PID-START-NAME` dir, if `name` is one.
    pub fn of_new_dir(name: &str) -> Option<Creator> {
        let mut parts = name.strip_prefix(NEW_DIR)?.splitn(3, '-');
        Some(Creator { pid: parts.next()?.parse().ok()?, start: parts.next()?.parse().ok()? })
    }

    pub fn me() -> Creator {
        let pid = std::process::id() as i32;
        Creator { pid, start: proc_start_time(pid).map(|(t, _)| t).unwrap_or(0) }
    }

    pub fn alive(&self) -> bool {
        process_alive(self.pid, self.start)
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl State {
    pub fn load(dir: &Path) -> Result<State> {
        store::read_json(&dir.join(STATE_FILE))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        store::write_json(&dir.join(STATE_FILE), self)
    }

    /// Work out the live status from the process and the start socket.
    pub fn refresh(&mut self, dir: &Path) {
        if self.status == Status::Creating && self.pid == 0 {
            return;
        }
        self.status = if !process_alive(self.pid, self.pid_start_time) {
            Status::Stopped
        } else if dir.join(START_SOCKET).exists() {
            Status::Created
        } else {
            Status::Running
        };
    }

    /// The state as the OCI spec defines it (no rcon extras), for hooks.
    pub fn oci_json(&self) -> String {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
        })
        .to_string()
    }
}

/// Field 22 of /proc/PID/stat, and whether the process is a zombie.
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// Alive, not a zombie, and the same process that was recorded.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_start_time(pid) {
        Some((t, zombie)) => !zombie && (start_time == 0 || t == start_time),
        None => false,
    }
}

/// Read the parent pid of a process from /proc.
pub fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Format a duration since the epoch as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
}

/// Load a container's state with its live status, or say clearly that it does not exist.
pub fn load_live(dir: &Path, id: &str) -> Result<State> {
    let p = dir.join(STATE_FILE);
    match crate::store::read_record::<State>(&p) {
        crate::store::Read::Good(mut st) => {
            st.refresh(dir);
            Ok(st)
        }
        crate::store::Read::Gone => anyhow::bail!("container {id:?} does not exist"),
        crate::store::Read::Bad(cause) => Err(crate::store::Broken::new("container", id, &p, cause).error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(Duration::from_secs(0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(Duration::new(1_795_305_600, 5)), "2026-11-22T00:00:00.000000005Z");
        assert_eq!(rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn own_process_is_alive_and_start_time_checked() {
        let pid = std::process::id() as i32;
        let (t, zombie) = proc_start_time(pid).unwrap();
        assert!(!zombie);
        assert!(process_alive(pid, t));
        assert!(!process_alive(pid, t + 1), "pid reuse not detected");
        assert!(!process_alive(0, 0));
    }

    #[test]
    fn status_serializes_lowercase() {
        assert_eq!(serde_json::to_string(&Status::Created).unwrap(), "\"created\"");
    }
}
