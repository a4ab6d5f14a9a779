//! Notices: one-line messages for the user that are not errors (rcon put
//! back a firewall it found damaged). They go to stderr, except in a process
//! whose stderr is a container's log (the `run -d` monitor): there they are
//! collected and handed to the command that waits for the start.

use std::sync::Mutex;

static COLLECTED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Tell the user `msg` (one line, without the `rcon: ` prefix).
pub fn notice(msg: &str) {
    let mut c = COLLECTED.lock().unwrap_or_else(|e| e.into_inner());
    match c.as_mut() {
        Some(v) => v.push(msg.to_string()),
        None => eprintln!("rcon: {msg}"),
    }
}

/// From now on, keep notices for [`take`] instead of printing them.
pub fn collect() {
    *COLLECTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
}

/// The notices kept since [`collect`].
pub fn take() -> Vec<String> {
    COLLECTED.lock().unwrap_or_else(|e| e.into_inner()).as_mut().map(std::mem::take).unwrap_or_default()
}
