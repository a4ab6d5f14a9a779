//! `terminal: true`: the pty master arrives over --console-socket with
//! SCM_RIGHTS and drives a real shell in the container.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;

use crate::common::{assert_clean, wait_pid_gone, wait_until, World};

fn p(b: &Path) -> &str {
    b.to_str().unwrap()
}

/// Receive one fd and the message body from a console socket connection.
fn recv_master(listener: &UnixListener) -> (OwnedFd, String) {
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).unwrap();
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(got) = c {
            fds.extend(got);
        }
    }
    let n = msg.bytes;
    assert_eq!(fds.len(), 1, "expected exactly one fd over the console socket");
    let body = String::from_utf8_lossy(&buf[..n]).into_owned();
    // SAFETY: the fd was just received over SCM_RIGHTS; nothing else owns it.
    (unsafe { OwnedFd::from_raw_fd(fds[0]) }, body)
}

/// Read from `fd` until `done(all output so far)`; panics after 15 s.
fn read_until(fd: &OwnedFd, acc: &mut String, done: impl Fn(&str) -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !done(acc) {
        assert!(Instant::now() < end, "timed out reading the pty; got {acc:?}");
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(200u16)).unwrap() == 0 {
            continue;
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => panic!("pty closed; got {acc:?}"),
            Ok(n) => acc.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("reading pty: {e}; got {acc:?}"),
        }
    }
}

#[test]
fn console_socket_gets_a_working_pty() {
    let w = World::new("cnpty");
    let b = w.bundle("b", |v| {
        v["process"]["terminal"] = true.into();
        v["process"]["args"] = json!(["sh"]);
    });
    let sock = w.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = w.id("t");
    w.ok_files(&["create", "--bundle", p(&b), "--console-socket", p(&sock), &id]);
    let (master, body) = recv_master(&listener);
    assert!(nix::unistd::isatty(&master).unwrap(), "the fd received is not a terminal");
    assert!(body.contains("/dev/pts/"), "message body should name the pty: {body:?}");
    let pid = w.state_of(&id)["pid"].as_i64().unwrap() as i32;

    w.ok(&["start", &id]);
    nix::unistd::write(&master, b"echo hi-from-pty; tty\n").unwrap();
    let mut got = String::new();
    // The echoed command line holds "hi-from-pty;" too: wait for the output line.
    read_until(&master, &mut got, |s| s.contains("hi-from-pty\r\n") && s.contains("/dev/pts/0"));
    assert_eq!(w.state_of(&id)["status"], "running");

    nix::unistd::write(&master, b"exit 3\n").unwrap();
    wait_until("the container to stop", || w.state_of(&id)["status"] == "stopped");
    wait_pid_gone(pid);
    drop(master);
    w.ok(&["delete", &id]);
    assert_clean(&w, &[&b]);
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let w = World::new("cnnos");
    let b = w.bundle("b", |v| v["process"]["terminal"] = true.into());
    let id = w.id("t");
    let err = w.fails_files(&["create", "--bundle", p(&b), &id]);
    assert!(err.contains("--console-socket") && err.contains("terminal"), "{err}");
    assert!(!w.root.join(&id).exists());

    // And the reverse: a console socket for a process without a terminal.
    let b2 = w.bundle("b2", |v| v["process"]["terminal"] = false.into());
    let sock = w.dir.path().join("console.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let err = w.fails_files(&["create", "--bundle", p(&b2), "--console-socket", p(&sock), &id]);
    assert!(err.contains("--console-socket") && err.contains("terminal"), "{err}");
    assert!(w.containers().is_empty(), "{:?}", w.containers());
    assert_clean(&w, &[&b, &b2]);
}
