//! Open files handed to a child across exec: rcon puts them at fds 3, 4, …
//! of the child and names the numbers in an environment variable, which the
//! child reads back. Used where a path on the command line would show the
//! host's layout to whoever can read the child's /proc/PID/cmdline.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{Context as _, Result};

/// The first fd number handed on (0-2 are stdio).
const FIRST: RawFd = 3;

/// Hand `lists` to `cmd`'s child: each list's files get the next fds from
/// 3 on, and the variable of that list names them (`4,5`). The parent's
/// files stay open and CLOEXEC. Its dup2s replace whatever the child had at
/// those numbers, so call it after any `pre_exec` that uses an fd of ours.
pub fn pass(cmd: &mut Command, lists: &[(&str, &[&File])]) -> Result<()> {
    let mut all: Vec<RawFd> = Vec::new();
    for (var, files) in lists {
        let start = FIRST + all.len() as RawFd;
        let nums: Vec<String> = (start..start + files.len() as RawFd).map(|n| n.to_string()).collect();
        if !nums.is_empty() {
            cmd.env(var, nums.join(","));
        }
        all.extend(files.iter().map(|f| f.as_raw_fd()));
    }
    if all.is_empty() {
        return Ok(());
    }
    // Above every target, so that no dup2 below overwrites a source not yet moved.
    let floor = FIRST + all.len() as RawFd;
    let high: Vec<File> = all
        .iter()
        .map(|&fd| {
            let n = nix::fcntl::fcntl(
                // SAFETY: fd belongs to a File the caller holds for this whole call.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(floor),
            )
            .context("dup of a file to hand on")?;
            // SAFETY: a fresh fd from F_DUPFD that nothing else owns.
            Ok(unsafe { File::from_raw_fd(n) })
        })
        .collect::<Result<_>>()?;
    let srcs: Vec<RawFd> = high.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: between fork and exec only dup2, an async-signal-safe call, on numbers
    // computed before the fork; no allocation. `high` lives in the closure until the
    // Command is dropped, so the sources stay open in the parent until the spawn.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &high;
            for (i, &src) in srcs.iter().enumerate() {
                // dup2 clears CLOEXEC on the target, which survives the exec.
                if libc::dup2(src, FIRST + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// In the child: take over the files the variable `var` names (none when it
/// is unset), and unset it.
pub fn take(var: &str) -> Result<Vec<File>> {
    let Some(list) = std::env::var_os(var) else { return Ok(Vec::new()) };
    let list = list.to_string_lossy().into_owned();
    std::env::remove_var(var);
    list.split(',')
        .map(|n| {
            let fd: RawFd =
                n.parse().ok().filter(|fd| *fd >= FIRST).with_context(|| format!("{var}={list}: not an fd"))?;
            // An fd that is not open would make a File own a number that may be opened later.
            if !is_open(fd) {
                anyhow::bail!("{var}: fd {fd} is not open");
            }
            // SAFETY: an open fd handed to us across exec; nothing else in this process knows
            // its number, so the File is its one owner.
            Ok(unsafe { File::from_raw_fd(fd) })
        })
        .collect()
}

/// Whether `fd` is an open file descriptor of this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number only tells whether it is an open fd.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two files reach a child at fds 3 and 4, named by their variables, and
    /// the child reads them there.
    #[test]
    fn files_reach_the_child_at_the_numbers_named() {
        let dir = std::env::temp_dir().join(format!("rcon-fdpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "first").unwrap();
        std::fs::write(&b, "second").unwrap();
        let (fa, fb) = (File::open(&a).unwrap(), File::open(&b).unwrap());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $ONE $TWO; cat <&3; echo; cat <&4"]);
        pass(&mut cmd, &[("ONE", &[&fa]), ("TWO", &[&fb])]).unwrap();
        let out = cmd.output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "3 4\nfirst\nsecond");
        // The parent's own files stay open (the child read through the same open file).
        assert!(is_open(fa.as_raw_fd()) && is_open(fb.as_raw_fd()));
    }
}
