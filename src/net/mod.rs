//! The network subsystem: a library of its own (docs/ARCHITECTURE.md).

pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
