//! Root integration tests: real namespaces, real processes, real packets.
//! Each test builds its own world (see ../shared TESTING rules in
//! docs/TESTING.md) and tears it down on success and on failure.
#![deny(clippy::undocumented_unsafe_blocks)]

mod antispoof;
mod badinput;
mod cgroups;
mod cluster;
mod cni;
mod common;
mod console;
mod devices_bpf;
mod dns;
mod dockerrun;
mod etcd;
mod examples;
mod firewall;
mod foreign;
mod gcrace;
mod hooks;
mod hotpath;
mod images;
mod ipip_ebpf;
mod ipip_user;
mod killsweep;
mod lifecycle;
mod namespaces;
mod netns;
mod network;
mod podcgroups;
mod pods;
mod ports;
mod qemu;
mod records;
mod refusals;
mod runflags;
mod seccomp;
mod selfheal;
mod services;
mod spec_musts;
