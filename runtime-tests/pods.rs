//! Pod sandboxes. So far: rcon's built-in pause process, as pid 1 of its own
//! pid namespace, reaps the orphans that land on it and ends cleanly on TERM.

use std::process::{Command, Stdio};

use crate::common::{rcon_bin, require_root, sh, wait_until};

/// Children of `pid` in state Z (zombies).
fn zombies_of(pid: u32) -> usize {
    sh(&format!("ps -o stat= --ppid {pid} || true")).lines().filter(|l| l.trim_start().starts_with('Z')).count()
}

#[test]
fn pause_reaps_orphans_and_ends_on_term() {
    require_root();
    let mut holder = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", rcon_bin(), "pause"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let holder_pid = holder.id();
    let mut pause = 0u32;
    wait_until("the pause process", || {
        pause = sh(&format!("pgrep -P {holder_pid} || true")).trim().parse().unwrap_or(0);
        pause != 0
    });
    // Orphans: their parent exits at once, so they land on the pause process.
    sh(&format!("nsenter --target {pause} --pid -- sh -c 'sleep 0.2 & sleep 0.3 & exit 0'"));
    wait_until("the orphans to be adopted and to end", || {
        sh(&format!("ps -o pid= --ppid {pause} || true")).trim().is_empty()
    });
    assert_eq!(zombies_of(pause), 0, "the pause process left zombies");
    // TERM ends it with status 0, and the holder with it.
    sh(&format!("kill -TERM {pause}"));
    let status = holder.wait().unwrap();
    assert!(status.success(), "pause did not end cleanly on TERM: {status}");
}
