//! rcon: a small runc-like container runtime whose network subsystem is the point.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md): the CLI (in the binary),
//! `engine` (docker-style run, pods, gc), then `runtime` (OCI bundles, state,
//! process launch), `net` (networks, firewall, cluster) and `image`, which never
//! import each other, then `store`, `context` and `notice`, and at the bottom
//! `sys` (raw syscalls) and `error` (the failure kinds). src/layers.rs keeps it so.

// Every `unsafe` says why it is sound, and every `pub unsafe fn` documents its contract.
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod cni;
pub mod context;
pub mod engine;
pub mod error;
pub mod image;
pub mod net;
pub mod notice;
pub mod runtime;
pub mod store;
pub mod sys;

pub use context::Context;

#[cfg(test)]
mod layers;
