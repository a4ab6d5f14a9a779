//! Finding a container's processes without cgroups: everything in its pid
//! namespace when it has its own, else its init and the init's descendants.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::{proc_ppid, process_alive, State};

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn ns_link(pid: i32, ns: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()
}

/// The container's live processes, init first.
pub fn container_pids(st: &State) -> Vec<i32> {
    if !process_alive(st.pid, st.pid_start_time) {
        return Vec::new();
    }
    let mut out = vec![st.pid];
    if st.own_pid_ns {
        let Some(target) = ns_link(st.pid, "pid") else { return out };
        out.extend(all_pids().into_iter().filter(|&p| p != st.pid && ns_link(p, "pid").as_ref() == Some(&target)));
    } else {
        let parents: HashMap<i32, i32> = all_pids().into_iter().filter_map(|p| Some((p, proc_ppid(p)?))).collect();
        let mut members: HashSet<i32> = HashSet::from([st.pid]);
        // Walk up from each process until we meet a member or the top.
        for &p in parents.keys() {
            let mut chain = vec![p];
            let mut cur = p;
            while let Some(&pp) = parents.get(&cur) {
                if members.contains(&pp) {
                    members.extend(chain.iter().copied());
                    break;
                }
                if pp <= 1 || chain.len() > 4096 {
                    break;
                }
                chain.push(pp);
                cur = pp;
            }
        }
        members.remove(&st.pid);
        let mut rest: Vec<i32> = members.into_iter().collect();
        rest.sort();
        out.extend(rest);
    }
    out
}

/// Signal every process of the container.
pub fn signal_all(st: &State, sig: Signal) {
    for pid in container_pids(st) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Wait until the init is gone (or a zombie), up to `limit`.
pub fn wait_gone(st: &State, limit: Duration) -> bool {
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    while process_alive(st.pid, st.pid_start_time) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    true
}
