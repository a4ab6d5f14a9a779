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

/// The container's live processes, init first: its cgroup (which still
/// holds orphans once the init is gone), else everything in its own pid
/// namespace, else the init's process tree.
pub fn container_pids(st: &State) -> Vec<i32> {
    let init_alive = process_alive(st.pid, st.pid_start_time);
    let mut out: Vec<i32> = if init_alive { vec![st.pid] } else { Vec::new() };
    let others: Vec<i32> = if let Some(cg) = &st.cgroup {
        super::cgroup::procs(cg)
    } else if st.own_pid_ns {
        match init_alive.then(|| ns_link(st.pid, "pid")).flatten() {
            Some(target) => all_pids().into_iter().filter(|&p| ns_link(p, "pid").as_ref() == Some(&target)).collect(),
            None => Vec::new(),
        }
    } else if init_alive {
        descendants(st.pid)
    } else {
        Vec::new()
    };
    let mut rest: Vec<i32> = others.into_iter().filter(|&p| p != st.pid && !is_zombie(p)).collect();
    rest.sort();
    out.extend(rest);
    out
}

fn is_zombie(pid: i32) -> bool {
    super::state::proc_start_time(pid).is_none_or(|(_, zombie)| zombie)
}

/// Processes below `root` in the parent tree.
fn descendants(root: i32) -> Vec<i32> {
    let parents: HashMap<i32, i32> = all_pids().into_iter().filter_map(|p| Some((p, proc_ppid(p)?))).collect();
    let mut members: HashSet<i32> = HashSet::from([root]);
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
    members.into_iter().collect()
}

/// Signal every process of the container.
pub fn signal_all(st: &State, sig: Signal) {
    if let (Some(cg), Signal::SIGKILL) = (&st.cgroup, sig) {
        super::cgroup::kill_all(cg);
        return;
    }
    for pid in container_pids(st) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Wait until every process of the container is gone (or a zombie), up to `limit`.
pub fn wait_gone(st: &State, limit: Duration) -> bool {
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    while !container_pids(st).is_empty() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
    true
}
