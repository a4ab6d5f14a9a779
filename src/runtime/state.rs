//! Container state: the OCI `state` JSON plus what rcon needs to act later.
//!
//! The status is not stored but derived each time from the process and the
//! start socket, so a crash can never leave a stale "running" on disk.

pub use crate::sys::proc::{proc_ppid, proc_start_time, process_alive, Creator, NEW_DIR};
pub use crate::sys::time::{now_rfc3339, rfc3339};
use std::path::{Path, PathBuf};

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
    /// The kernel's OOM killer killed a process of the container (read from
    /// its memory group once it stopped).
    #[serde(default, rename = "oomKilled", skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// The rootfs, when the container has no mount namespace of its own: its
    /// mounts are then in rcon's, under this path, and delete unmounts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mounts: Option<PathBuf>,
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

/// Load a container's state with its live status, or say clearly that it does not exist.
pub fn load_live(dir: &Path, id: &str) -> Result<State> {
    let p = dir.join(STATE_FILE);
    match crate::store::read_record::<State>(&p) {
        crate::store::Read::Good(mut st) => {
            st.refresh(dir);
            Ok(st)
        }
        crate::store::Read::Gone => {
            Err(crate::error::Error::NotFound(format!("container {id:?} does not exist")).into())
        }
        crate::store::Read::Bad(cause) => Err(crate::store::Broken::new("container", id, &p, cause).error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_serializes_lowercase() {
        assert_eq!(serde_json::to_string(&Status::Created).unwrap(), "\"created\"");
    }
}
