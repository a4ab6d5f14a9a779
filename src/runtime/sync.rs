//! The channel between rcon and the container's init while it is set up:
//! one JSON message per line over a socketpair. EOF means the other side
//! exited, or (after execve closed the close-on-exec end) that exec succeeded.

use std::io::{Read, Write};
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
    /// Setup failed; the message names the cause.
    Error { msg: String },
}

pub struct Channel(pub UnixStream);

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = UnixStream::pair().context("socketpair")?;
        Ok((Channel(a), Channel(b)))
    }

    pub fn send(&mut self, msg: &Msg) -> Result<()> {
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        self.0.write_all(&line).context("sending to container init")
    }

    /// Read one message; `None` at EOF. Byte by byte, because both ends may be
    /// shared by several processes and no read may take more than its line.
    pub fn recv(&mut self) -> Result<Option<Msg>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.0.read(&mut byte) {
                Ok(0) if line.is_empty() => return Ok(None),
                Ok(0) => bail!("container init: truncated message"),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading from container init"),
            }
        }
        Ok(Some(serde_json::from_slice(&line).context("container init: bad message")?))
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
