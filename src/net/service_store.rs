//! The service records: `<data-root>/services/<name>.json`, one per service,
//! changed under an flock on the directory. Below the service logic and the
//! firewall's healing, which both read them (heal rebuilds the rules from
//! them; `service` changes them), so neither needs the other.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::firewall::Backend;
use super::service_types::{Lb, Vip};

/// One backend: a container's endpoint and the port it serves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The container (id) as given to `--backend`, and its name then.
    pub container: String,
    pub name: String,
    /// The endpoint's key: how the backend leaves when its endpoint goes.
    pub endpoint: String,
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub vip: Vip,
    pub lb: Lb,
    pub firewall: Backend,
    pub backends: Vec<Member>,
}

/// The services on disk: `<data-root>/services/<name>.json`.
pub type Store = crate::store::Records<Service>;

/// `<data-root>/services`: the records, and their index (`service_index`).
pub fn dir(data_root: &Path) -> PathBuf {
    data_root.join("services")
}

pub fn store(data_root: &Path) -> Store {
    Store::new(dir(data_root), "service")
}

impl crate::store::Named for Service {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The holder name of a service's VIP in IPAM (never an endpoint key, which is hex).
pub fn lease_owner(service: &str) -> String {
    format!("svc:{service}")
}

/// The endpoint key an address backend goes by.
pub fn address_key(ip: Ipv4Addr) -> String {
    format!("addr:{ip}")
}
