//! Processes as /proc shows them: a process by pid and kernel start time
//! (so a reused pid is never mistaken for it), and the records' creator.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_start_time_checked() {
        let pid = std::process::id() as i32;
        let (t, zombie) = proc_start_time(pid).unwrap();
        assert!(!zombie);
        assert!(process_alive(pid, t));
        assert!(!process_alive(pid, t + 1), "pid reuse not detected");
        assert!(!process_alive(0, 0));
    }
}
