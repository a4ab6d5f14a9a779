//! The lowest layer: what talks to the kernel or the clock directly and
//! knows nothing of containers or networks. Every other layer may use it;
//! it uses none of them.

pub mod bpf;
pub mod cgroup_fork;
pub mod iface;
pub mod linger;
pub mod nfnl;
pub mod nftlib;
pub mod ns;
pub mod pidfd;
pub mod proc;
pub mod rawsock;
pub mod spawn;
pub mod supervise;
pub mod time;
pub mod tun;
