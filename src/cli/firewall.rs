//! `rcon firewall …`: rcon's rules, restored from its records on demand.

use anyhow::Result;
use clap::Subcommand;
use rcon::net::heal;
use rcon::Context;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum FirewallCmd {
    /// Replace all of rcon's firewall rules with what its records say (after a firewalld or nftables
    /// restart, `nft flush ruleset`, or a hand edit). One batch per backend.
    Reload,
}

pub fn firewall(ctx: &Context, cmd: FirewallCmd) -> Result<i32> {
    match cmd {
        FirewallCmd::Reload => {
            let done = heal::reload(ctx)?;
            if done.is_empty() {
                println!("no rcon network: nothing to restore");
            }
            for r in done {
                println!(
                    "{}: restored {} network(s), {} endpoint(s) with published ports, {} service(s)",
                    r.backend, r.networks, r.published, r.services
                );
            }
            Ok(0)
        }
    }
}
