//! The network subsystem: a library of its own (docs/ARCHITECTURE.md).

pub mod attachment;
pub mod cluster;
pub mod dns;
pub mod driver;
pub mod endpoint;
pub mod etcd;
pub mod firewall;
pub mod forwarding;
pub mod heal;
pub mod hostports;
pub mod ipam;
pub mod kernel;
pub mod link;
pub mod links;
pub mod macaddr;
pub mod manage;
pub mod netns;
pub mod network;
pub mod overlay;
pub mod ports;
pub mod service;
pub mod service_index;
pub mod service_store;
pub mod service_types;
pub mod shortcut;
pub mod tc_bpf;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod wire;

/// Hex SHA-256 of `s`: stable short names for links and records.
pub fn short_hash(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
