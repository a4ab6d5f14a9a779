//! rcon: a small runc-like container runtime whose network subsystem is the point.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md): the CLI (in the binary),
//! `runtime` (OCI bundles, state, process launch), `net` (named namespaces and
//! netlink) and `store` (atomic files, locks, ids).

pub mod context;
pub mod engine;
pub mod image;
pub mod net;
pub mod notice;
pub mod runtime;
pub mod store;

pub use context::Context;
