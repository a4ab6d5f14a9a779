//! Names across nodes, the etcd side (docs/DNS.md "Across nodes"): two
//! threads of the resolver's worker, started when this node is in the etcd
//! cluster mode and its cluster network has DNS on, each a plain blocking
//! loop with its own etcd connection (and so its own current-thread
//! runtime, inside `Etcd`):
//!
//! - the publisher puts this node's record at `<prefix>/rcon/dns/<lease
//!   name>` when it changes, attached to an etcd lease of its own with a
//!   short TTL that it renews, so that the names of a node that died go by
//!   themselves; told to stop, it revokes the lease, which takes the key;
//! - the watcher lists that prefix, watches it from the listed revision,
//!   keeps the other nodes' records and pokes the control socket on each
//!   change, so that the main loop rebuilds the table with them.
//!
//! When etcd is away both retry with backoff and the table keeps the remote
//! names last seen; the attach path never waits for any of this (it only
//! pokes, as before). Lines go to the resolver's log (`<root>/.dns/log`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::across::{Record, Remote};
use super::table;
use crate::net::etcd::{Endpoint, Etcd, Watched};
use crate::net::network::Network;

/// The TTL of the publisher's etcd lease: how long a dead node's names outlive it.
pub const TTL: Duration = Duration::from_secs(10);
/// The lease is renewed (and the key checked) this often.
const RENEW: Duration = Duration::from_millis(TTL.as_millis() as u64 / 3);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long the watcher waits on its watch before it looks whether it is to stop.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// Where and as whom this node publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub at: Endpoint,
    /// This node's lease key name (`10.244.1.0-24`), which names its key.
    pub own: String,
    /// The local cluster network.
    pub network: String,
}

/// The target when this node is in the etcd mode and its cluster network (among `nets`) has DNS on.
pub fn target(data_root: &Path, nets: &[Network]) -> Option<Target> {
    let c = crate::net::cluster::load(data_root).ok()??;
    let m = c.store.as_ref()?;
    nets.iter().find(|n| n.name == c.network && table::serves(n).is_some())?;
    Some(Target { at: m.at.clone(), own: c.lease_name(), network: c.network.clone() })
}

enum Msg {
    Publish(Vec<u8>),
    /// Revoke the lease, then say so.
    Stop(Sender<()>),
}

/// The two threads of one target.
pub struct Across {
    pub target: Target,
    tx: Sender<Msg>,
    remote: Arc<Mutex<Remote>>,
    stop: Arc<AtomicBool>,
}

impl Across {
    /// Start both threads; the watcher pokes `control` when the other nodes' names change.
    pub fn start(target: Target, control: PathBuf) -> Across {
        let (tx, rx) = mpsc::channel();
        let remote = Arc::new(Mutex::new(Remote::default()));
        let stop = Arc::new(AtomicBool::new(false));
        say(&format!(
            "publishing the names of network {} at {} ({})",
            target.network,
            target.at.dns_key(&target.own),
            target.at.endpoints.join(",")
        ));
        let t = target.clone();
        std::thread::spawn(move || publisher(&t, &rx));
        let (t, r, s) = (target.clone(), remote.clone(), stop.clone());
        std::thread::spawn(move || watcher(&t, &r, &s, &control));
        Across { target, tx, remote, stop }
    }

    /// This node's names now (the publisher puts them only when they changed).
    pub fn publish(&self, r: &Record) {
        let _ = self.tx.send(Msg::Publish(r.to_json()));
    }

    /// The other nodes' names as last seen.
    pub fn remote(&self) -> Remote {
        self.remote.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop both threads. The publisher revokes its lease (this node's key goes at once); waited for
    /// at most `wait`, so an etcd that is away holds up no stop (the lease then expires).
    pub fn stop(self, wait: Duration) {
        self.stop.store(true, Ordering::Release);
        let (ack, done) = mpsc::channel();
        if self.tx.send(Msg::Stop(ack)).is_ok() {
            let _ = done.recv_timeout(wait);
        }
        say(&format!("stopped publishing the names of network {}", self.target.network));
    }
}

/// Bring the threads in line with `want` (started, moved to another target, or stopped), give them
/// this node's names, and return the target and the remote names to merge.
pub fn sync(
    slot: &Mutex<Option<Across>>,
    want: Option<Target>,
    control: &Path,
    mine: impl FnOnce(&Target) -> Record,
) -> Option<(Target, Remote)> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().map(|a| &a.target) != want.as_ref() {
        if let Some(old) = slot.take() {
            old.stop(STOP_CHECK);
        }
        *slot = want.map(|t| Across::start(t, control.to_path_buf()));
    }
    let a = slot.as_ref()?;
    a.publish(&mine(&a.target));
    Some((a.target.clone(), a.remote()))
}

/// A line in the resolver's log (its stderr).
fn say(line: &str) {
    eprintln!("{} {line}", crate::sys::time::now_rfc3339());
}

/// Retries with backoff that say so once per cause, not once per try.
struct Retry {
    backoff: Duration,
    failing: Option<String>,
}

impl Retry {
    fn new() -> Retry {
        Retry { backoff: BACKOFF_MIN, failing: None }
    }

    /// A try failed: say why (when the cause is new); returns how long to wait.
    fn failed(&mut self, what: &str, e: &anyhow::Error) -> Duration {
        let why = format!("{e:#}");
        if self.failing.as_deref() != Some(&why) {
            say(&format!("{what}: {why}; retrying with backoff"));
        }
        self.failing = Some(why);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// A try worked: say so when earlier ones had failed.
    fn worked(&mut self, line: &str) {
        if self.failing.take().is_some() {
            say(line);
        }
        self.backoff = BACKOFF_MIN;
    }
}

/// The publisher's view of etcd: its connection and lease, and what it put under it.
#[derive(Default)]
struct Published {
    etcd: Option<Etcd>,
    lease: Option<i64>,
    put: Option<Vec<u8>>,
}

impl Published {
    /// Bring the key in line with `value`: connect and lease when need be; when `due`, renew the
    /// lease (a lease gone is granted anew) and look at the key (deleted or overwritten by someone:
    /// put again); put when etcd has not got `value`.
    fn step(&mut self, at: &Endpoint, key: &str, value: &[u8], due: bool) -> Result<()> {
        if self.etcd.is_none() {
            self.etcd = Some(Etcd::connect(at)?);
        }
        let e = self.etcd.as_mut().expect("connected above");
        let lease = match self.lease {
            Some(l) if !due || e.renew(l)? => l,
            _ => {
                self.put = None;
                e.grant(TTL)?
            }
        };
        self.lease = Some(lease);
        if due && e.get(key)?.as_deref() != Some(value) {
            self.put = None;
        }
        if self.put.as_deref() != Some(value) {
            e.put_leased(key, value.to_vec(), lease)?;
            self.put = Some(value.to_vec());
        }
        Ok(())
    }

    /// Revoke the lease (its key goes with it).
    fn revoke(&mut self, at: &Endpoint) {
        let Some(lease) = self.lease.take() else { return };
        let res = match self.etcd.as_mut() {
            Some(e) => e.revoke(lease),
            None => Etcd::connect(at).and_then(|mut e| e.revoke(lease)),
        };
        if let Err(e) = res {
            say(&format!(
                "this node's names stay in etcd until their lease expires (in at most {}s): {e:#}",
                TTL.as_secs()
            ));
        }
    }
}

/// The next messages: the first as it comes (or None at `wake`), then all that are queued. Stop wins;
/// of several records only the latest counts.
fn next_msgs(rx: &Receiver<Msg>, wake: Instant) -> Result<Option<Vec<u8>>, Option<Sender<()>>> {
    let first = match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
        Ok(m) => m,
        Err(RecvTimeoutError::Timeout) => return Ok(None),
        Err(RecvTimeoutError::Disconnected) => return Err(None),
    };
    let mut latest = None;
    for m in std::iter::once(first).chain(rx.try_iter()) {
        match m {
            Msg::Publish(v) => latest = Some(v),
            Msg::Stop(ack) => return Err(Some(ack)),
        }
    }
    Ok(latest)
}

fn publisher(t: &Target, rx: &Receiver<Msg>) {
    let key = t.at.dns_key(&t.own);
    let mut state = Published::default();
    let mut want: Option<Vec<u8>> = None;
    let mut retry = Retry::new();
    let mut wake = Instant::now() + RENEW;
    loop {
        match next_msgs(rx, wake) {
            Ok(v) => want = v.or(want),
            Err(ack) => {
                state.revoke(&t.at);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                return;
            }
        }
        let Some(value) = &want else {
            wake = Instant::now() + RENEW;
            continue;
        };
        let due = Instant::now() >= wake;
        if !due && state.put.as_ref() == Some(value) {
            continue;
        }
        match state.step(&t.at, &key, value, due) {
            Ok(()) => {
                retry.worked(&format!("etcd answers again: {key} is published"));
                wake = Instant::now() + RENEW;
            }
            Err(e) => {
                state.etcd = None;
                wake = Instant::now() + retry.failed(&format!("publishing {key}"), &e);
            }
        }
    }
}

fn watcher(t: &Target, remote: &Mutex<Remote>, stop: &AtomicBool, control: &Path) {
    let prefix = t.at.dns_prefix();
    let mut retry = Retry::new();
    while !stop.load(Ordering::Acquire) {
        if let Err(e) = watch(t, &prefix, remote, stop, control, &mut retry) {
            let until = Instant::now() + retry.failed(&format!("watching {prefix}"), &e);
            while Instant::now() < until && !stop.load(Ordering::Acquire) {
                std::thread::sleep(STOP_CHECK.min(until.saturating_duration_since(Instant::now())));
            }
        }
    }
}

/// List, then watch until told to stop (Ok) or until the watch breaks (Err: list again).
fn watch(
    t: &Target,
    prefix: &str,
    remote: &Mutex<Remote>,
    stop: &AtomicBool,
    control: &Path,
    retry: &mut Retry,
) -> Result<()> {
    let mut e = Etcd::connect(&t.at)?;
    let (rev, entries) = e.list_under(prefix)?;
    let (listed, lines) = Remote::from_list(&t.own, entries.iter().map(|x| (x.name.as_str(), x.value.as_slice())));
    lines.iter().for_each(|l| say(l));
    let changed = {
        let mut r = remote.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *r, listed) != *r
    };
    if changed {
        super::server::poke(control, false);
    }
    let mut w = e.watch_under(prefix, rev + 1)?;
    retry.worked(&format!("etcd answers again: watching {prefix} from revision {}", rev + 1));
    while !stop.load(Ordering::Acquire) {
        if let Watched::Changes(cs) = e.next_under(&mut w, prefix, Instant::now() + STOP_CHECK)? {
            let (changed, lines) = remote.lock().unwrap_or_else(|e| e.into_inner()).apply(&t.own, &cs);
            lines.iter().for_each(|l| say(l));
            if changed {
                super::server::poke(control, false);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publisher_takes_the_latest_record_and_a_stop_first() {
        let (tx, rx) = mpsc::channel();
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(matches!(next_msgs(&rx, soon), Ok(None)), "nothing came: time to renew");
        tx.send(Msg::Publish(b"1".to_vec())).unwrap();
        tx.send(Msg::Publish(b"2".to_vec())).unwrap();
        assert_eq!(next_msgs(&rx, soon).ok(), Some(Some(b"2".to_vec())));
        let (ack, _done) = mpsc::channel();
        tx.send(Msg::Stop(ack)).unwrap();
        tx.send(Msg::Publish(b"3".to_vec())).unwrap();
        assert!(matches!(next_msgs(&rx, soon), Err(Some(_))));
        drop(tx);
        assert_eq!(next_msgs(&rx, soon).ok(), Some(Some(b"3".to_vec())), "what came after the stop is left");
        assert!(matches!(next_msgs(&rx, soon), Err(None)), "the worker is gone");
    }
}
