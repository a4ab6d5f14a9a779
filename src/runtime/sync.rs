//! The channel between rcon and the container's init while it is set up:
//! one JSON message per packet over a SOCK_SEQPACKET socketpair. EOF means
//! the other side exited, or (after execve closed the close-on-exec end)
//! that exec succeeded.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// The intermediate process reports the init's pid (in rcon's pid namespace).
    Pid { pid: i32 },
    /// The intermediate made a user namespace: rcon must write its id maps.
    UserNs,
    /// The maps are written.
    UserNsDone,
    /// The init has its mounts in place: run prestart/createRuntime hooks.
    Hooks,
    /// The hooks ran; here is the state JSON for createContainer hooks.
    HooksDone { state: String },
    /// The init is ready and waits for `start`.
    Created,
    /// Start now (`run`, which made no start socket).
    Start,
    /// Setup failed; the message names the cause.
    Error { msg: String },
}

pub struct Channel(pub UnixStream);

/// Messages are a state JSON or an error line: far below this.
const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    /// Packets, not a byte stream: both ends may be shared by several
    /// processes (rcon, the intermediate, the init), and a packet is read
    /// whole by one of them in one call, never split or merged.
    pub fn pair() -> Result<(Channel, Channel)> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).context("socketpair")?;
        Ok((Channel(UnixStream::from(a)), Channel(UnixStream::from(b))))
    }

    pub fn send(&mut self, msg: &Msg) -> Result<()> {
        let packet = serde_json::to_vec(msg)?;
        if packet.len() > MAX_MESSAGE {
            bail!("a message to the container init of {} bytes, over the limit of {MAX_MESSAGE}", packet.len());
        }
        self.0.write_all(&packet).context("sending to container init")
    }

    /// Read one message; `None` at EOF (no message is ever empty).
    pub fn recv(&mut self) -> Result<Option<Msg>> {
        use nix::sys::socket::{recv, MsgFlags};
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            // MSG_TRUNC: the packet's real length, so that a longer one is an error, not cut short.
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.context("reading from container init")?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        if n > buf.len() {
            bail!("container init: a message of {n} bytes, over the limit of {MAX_MESSAGE}");
        }
        Ok(Some(serde_json::from_slice(&buf[..n]).context("container init: bad message")?))
    }

    /// Expect a message; an `Error` or EOF becomes an error naming the stage.
    pub fn expect(&mut self, stage: &str) -> Result<Msg> {
        match self.recv()? {
            Some(Msg::Error { msg }) => bail!("{msg}"),
            Some(m) => Ok(m),
            None => bail!("container init exited during {stage}"),
        }
    }
}
