//! The etcd store of the cluster mode (flannel's subnet leases, and the
//! names each node's resolver publishes): a blocking face over the
//! etcd-client crate. Like `Netlink`, each `Etcd` has its own
//! current-thread tokio runtime, so that callers stay synchronous and never
//! run netlink inside it. Every call is bounded by a timeout, so an etcd
//! that went away gives an error in seconds, never a hang.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, PutOptions, TlsOptions,
    Txn, TxnOp, WatchOptions, WatchResponse, WatchStream,
};
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};

use crate::error::{self, Error};

pub const DEFAULT_PREFIX: &str = "/coreos.com/network";
/// How long a call may take before etcd counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before the kernel probes the connection to etcd.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Where the store is and how to reach it (recorded in the cluster record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub endpoints: Vec<String>,
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
}

impl Endpoint {
    fn shown(&self) -> String {
        self.endpoints.join(",")
    }

    pub fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    pub fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    pub fn lease_key(&self, name: &str) -> String {
        format!("{}{name}", self.subnets_prefix())
    }

    /// rcon's own part of the prefix, where flannel never looks: the names each node's resolver
    /// publishes, one key per node (docs/DNS.md "Across nodes").
    pub fn dns_prefix(&self) -> String {
        format!("{}/rcon/dns/", self.prefix)
    }

    /// The names key of the node whose lease is `lease_name` (`10.244.1.0-24`).
    pub fn dns_key(&self, lease_name: &str) -> String {
        format!("{}{lease_name}", self.dns_prefix())
    }

    fn tls(&self) -> Result<Option<TlsOptions>> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).with_context(|| format!("--etcd-{what} {}: cannot read it", p.display()))
        };
        let mut tls = match &self.cafile {
            Some(ca) => TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca, "cafile")?)),
            None if self.certfile.is_some() || self.endpoints.iter().any(|e| e.starts_with("https:")) => {
                bail!("etcd over TLS needs --etcd-cafile: the CA that signed etcd's certificate")
            }
            None => return Ok(None),
        };
        match (&self.certfile, &self.keyfile) {
            (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c, "certfile")?, read(k, "keyfile")?)),
            (None, None) => {}
            _ => bail!("--etcd-certfile and --etcd-keyfile go together"),
        }
        Ok(Some(tls))
    }
}

/// One lease key as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's last part (`10.244.52.0-24`).
    pub name: String,
    pub value: Vec<u8>,
    /// The etcd lease the key is attached to (0: none).
    pub lease: i64,
    pub mod_revision: i64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(Entry),
    Delete(String),
}

/// What waiting on a watch brought.
pub enum Watched {
    Changes(Vec<Change>),
    /// The deadline passed first.
    Timeout,
}

pub struct Etcd {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub at: Endpoint,
}

impl Etcd {
    /// Connect, and prove etcd answers (a status call), within seconds.
    pub fn connect(at: &Endpoint) -> Result<Etcd> {
        if at.endpoints.is_empty() {
            bail!("no etcd endpoints: give --etcd-endpoints URLS or set RCON_ETCD_ENDPOINTS");
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
        // TCP keepalive, not gRPC pings: the kernel probes an idle
        // connection and the agent wakes only if it died silently (a host
        // gone without a reset), instead of every ping interval.
        let mut opts = ConnectOptions::new().with_connect_timeout(CALL_TIMEOUT).with_tcp_keepalive(TCP_KEEPALIVE);
        if let Some(tls) = at.tls()? {
            opts = opts.with_tls(tls);
        }
        let shown = at.shown();
        let client = rt
            .block_on(async {
                let mut c = tokio::time::timeout(CALL_TIMEOUT, Client::connect(&at.endpoints, Some(opts)))
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer in {}s", CALL_TIMEOUT.as_secs()))??;
                tokio::time::timeout(CALL_TIMEOUT, c.status())
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer in {}s", CALL_TIMEOUT.as_secs()))??;
                anyhow::Ok(c)
            })
            .map_err(|e| {
                // etcd with --client-cert-auth drops a client without a
                // certificate in the handshake, which tonic reports only
                // as a closed stream.
                let hint = if at.cafile.is_some() && at.certfile.is_none() {
                    " (if etcd asks clients for a certificate, give --etcd-certfile and --etcd-keyfile)"
                } else {
                    ""
                };
                anyhow::anyhow!("etcd at {shown} is unreachable: {}{hint}", cause(&e))
            })?;
        Ok(Etcd { rt, client, at: at.clone() })
    }

    /// Run one call with the timeout; errors name etcd and what was asked.
    fn call<T, F: Future<Output = Result<T, etcd_client::Error>>>(
        &mut self,
        what: &str,
        f: impl FnOnce(Client) -> F,
    ) -> Result<T> {
        let c = self.client.clone();
        let shown = self.at.shown();
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, f(c)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    let gone = matches!(&e, etcd_client::Error::GRpcStatus(st) if st.code() == tonic::Code::NotFound);
                    let msg = format!("etcd at {shown}: {what}: {}", cause(&anyhow::Error::from(e)));
                    Err(if gone { Error::NotFound(msg).into() } else { anyhow!(msg) })
                }
                Err(_) => bail!("etcd at {shown}: {what}: no answer in {}s", CALL_TIMEOUT.as_secs()),
            }
        })
    }

    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let k = key.to_string();
        let r = self.call(&format!("reading {key}"), |mut c| async move { c.get(k, None).await })?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    pub fn put(&mut self, key: &str, value: Vec<u8>) -> Result<()> {
        let k = key.to_string();
        self.call(&format!("writing {key}"), |mut c| async move { c.put(k, value, None).await })?;
        Ok(())
    }

    /// Put `key` attached to `lease`: it goes when the lease does.
    pub fn put_leased(&mut self, key: &str, value: Vec<u8>, lease: i64) -> Result<()> {
        let k = key.to_string();
        let opts = PutOptions::new().with_lease(lease);
        self.call(&format!("writing {key}"), |mut c| async move { c.put(k, value, Some(opts)).await })?;
        Ok(())
    }

    /// Every lease key, and the store's revision at the time.
    pub fn list(&mut self) -> Result<(i64, Vec<Entry>)> {
        self.list_under(&self.at.subnets_prefix())
    }

    /// Every key under `prefix` (named by what follows it), and the store's revision at the time.
    pub fn list_under(&mut self, prefix: &str) -> Result<(i64, Vec<Entry>)> {
        let p = prefix.to_string();
        let r = self.call(&format!("listing {prefix}"), |mut c| async move {
            c.get(p, Some(GetOptions::new().with_prefix())).await
        })?;
        let rev = r.header().map_or(0, |h| h.revision());
        let entries = r
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key_str().ok()?.strip_prefix(prefix)?.to_string();
                Some(Entry { name, value: kv.value().to_vec(), lease: kv.lease(), mod_revision: kv.mod_revision() })
            })
            .collect();
        Ok((rev, entries))
    }

    /// A new etcd lease of `ttl`.
    pub fn grant(&mut self, ttl: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1) as i64;
        Ok(self.call("granting a lease", |mut c| async move { c.lease_grant(secs, None).await })?.id())
    }

    pub fn revoke(&mut self, lease: i64) -> Result<()> {
        match self.call("revoking the lease", |mut c| async move { c.lease_revoke(lease).await }) {
            Err(e) if error::is_not_found(&e) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Renew `lease`; false when it is gone (expired or revoked).
    pub fn renew(&mut self, lease: i64) -> Result<bool> {
        let r = self.call("renewing the lease", |mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            stream.message().await
        });
        match r {
            Ok(Some(resp)) => Ok(resp.ttl() > 0),
            Ok(None) => Ok(false),
            Err(e) if error::is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Seconds left on `lease` (None: gone).
    pub fn time_left(&mut self, lease: i64) -> Result<Option<i64>> {
        let r = self.call("reading a lease", |mut c| async move { c.lease_time_to_live(lease, None).await })?;
        Ok((r.ttl() > 0).then_some(r.ttl()))
    }

    /// Put a lease key attached to `lease` if the key does not exist yet
    /// (one transaction: two nodes never get one subnet). False: taken.
    pub fn create(&mut self, name: &str, value: Vec<u8>, lease: i64) -> Result<bool> {
        let key = self.at.lease_key(name);
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            key.clone(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
        Ok(self.call(&format!("leasing {key}"), |mut c| async move { c.txn(txn).await })?.succeeded())
    }

    /// Take over a lease key as it was listed (unchanged since `mod_revision`).
    pub fn replace(&mut self, name: &str, value: Vec<u8>, lease: i64, mod_revision: i64) -> Result<bool> {
        let key = self.at.lease_key(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(lease)))]);
        Ok(self.call(&format!("leasing {key}"), |mut c| async move { c.txn(txn).await })?.succeeded())
    }

    /// Delete a lease key; false when there was none.
    pub fn delete(&mut self, name: &str) -> Result<bool> {
        self.delete_key(&self.at.lease_key(name))
    }

    /// Delete `key`; false when there was none.
    pub fn delete_key(&mut self, key: &str) -> Result<bool> {
        let k = key.to_string();
        Ok(self.call(&format!("deleting {key}"), |mut c| async move { c.delete(k, None).await })?.deleted() > 0)
    }

    /// Watch the lease keys from `revision` on.
    pub fn watch(&mut self, revision: i64) -> Result<WatchStream> {
        self.watch_under(&self.at.subnets_prefix(), revision)
    }

    /// Watch the keys under `prefix` from `revision` on.
    pub fn watch_under(&mut self, prefix: &str, revision: i64) -> Result<WatchStream> {
        let prefix = prefix.to_string();
        let opts = WatchOptions::new().with_prefix().with_start_revision(revision);
        self.call(&format!("watching {prefix}"), |mut c| async move { c.watch(prefix, Some(opts)).await })
    }

    /// The next changes of a watch, or Timeout at `deadline`. An error when
    /// the watch broke or was cancelled (compacted): list again.
    pub fn next(&mut self, w: &mut WatchStream, deadline: Instant) -> Result<Watched> {
        self.next_under(w, &self.at.subnets_prefix(), deadline)
    }

    /// [`Etcd::next`] of a watch of the keys under `prefix`.
    pub fn next_under(&mut self, w: &mut WatchStream, prefix: &str, deadline: Instant) -> Result<Watched> {
        let shown = self.at.shown();
        self.rt.block_on(async {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let msg = match tokio::time::timeout(left, w.message()).await {
                    Err(_) => return Ok(Watched::Timeout),
                    Ok(Err(e)) => bail!("etcd at {shown}: the watch broke: {}", cause(&e.into())),
                    Ok(Ok(None)) => bail!("etcd at {shown}: the watch ended"),
                    Ok(Ok(Some(m))) => m,
                };
                if msg.canceled() {
                    bail!("etcd at {shown}: the watch was cancelled ({})", msg.cancel_reason());
                }
                let mut changes = changes_of(&msg, prefix);
                // What else has arrived already joins this batch: a burst of
                // puts is then programmed and recorded once, not per put.
                // A message taken here is gone from the stream, so an end
                // or a cancel met here is reported now (the caller lists
                // again, which also covers this batch), never swallowed.
                while let Some(more) = w.message().now_or_never() {
                    match more {
                        Ok(Some(m)) if !m.canceled() => changes.extend(changes_of(&m, prefix)),
                        Ok(Some(m)) => bail!("etcd at {shown}: the watch was cancelled ({})", m.cancel_reason()),
                        Ok(None) => bail!("etcd at {shown}: the watch ended"),
                        Err(e) => bail!("etcd at {shown}: the watch broke: {}", cause(&e.into())),
                    }
                }
                if !changes.is_empty() {
                    return Ok(Watched::Changes(changes));
                }
            }
        })
    }
}

/// The lease changes of one watch response.
fn changes_of(msg: &WatchResponse, prefix: &str) -> Vec<Change> {
    msg.events()
        .iter()
        .filter_map(|ev| {
            let kv = ev.kv()?;
            let name = kv.key_str().ok()?.strip_prefix(prefix)?.to_string();
            Some(match ev.event_type() {
                EventType::Put => Change::Put(Entry {
                    name,
                    value: kv.value().to_vec(),
                    lease: kv.lease(),
                    mod_revision: kv.mod_revision(),
                }),
                EventType::Delete => Change::Delete(name),
            })
        })
        .collect()
}

/// A client error said briefly: a gRPC status as its message and its
/// innermost cause ("tcp connect error: Connection refused (os error
/// 111)"), not tonic's whole debug dump.
fn cause(e: &anyhow::Error) -> String {
    fn innermost(mut src: Option<&(dyn std::error::Error + 'static)>, mut last: String) -> String {
        while let Some(s) = src {
            last = s.to_string();
            src = s.source();
        }
        last
    }
    match e.downcast_ref::<etcd_client::Error>() {
        Some(etcd_client::Error::GRpcStatus(st)) => {
            use std::error::Error as _;
            match st.source() {
                Some(src) => format!("{}: {}", st.message(), innermost(Some(src), String::new())),
                None => st.message().to_string(),
            }
        }
        _ => innermost(e.source(), e.to_string()),
    }
}
