//! `rcon cluster …`, `rcon node …` and the hidden `rcon ipipd`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rcon::net::overlay::ipip_user;

/// `rcon ipipd`: the userspace IPIP daemon (started by the ipip backend).
#[derive(Args, Debug)]
pub struct IpipdArgs {
    #[arg(long)]
    pub tun: String,
    #[arg(long)]
    pub local: Ipv4Addr,
    #[arg(long)]
    pub peers: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub queues: usize,
    /// Run the data plane itself (the supervisor starts it so).
    #[arg(long)]
    pub worker: bool,
}

pub fn ipipd(a: IpipdArgs) -> Result<i32> {
    let cfg = ipip_user::Config { tun: a.tun, local: a.local, peers_file: a.peers, queues: a.queues };
    ipip_user::main(&cfg, a.worker)
}
