//! `rcon netns …`: named network namespaces with the `ip netns` contract.

use anyhow::Result;
use clap::Subcommand;
use rcon::Context;

#[derive(Subcommand, Debug)]
pub enum NetnsCmd {
    /// Create a named network namespace (a bind mount under --netns-dir).
    Add { name: String },
    /// List named network namespaces.
    #[command(alias = "ls", alias = "show")]
    List,
    /// Delete named network namespaces.
    #[command(alias = "del", alias = "rm")]
    Delete { names: Vec<String> },
    /// Run a command inside a named network namespace.
    Exec {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print the names of the namespaces that a process is in (default: self).
    Identify { pid: Option<i32> },
    /// Give a name to the network namespace of a running process.
    Attach { name: String, pid: i32 },
}

pub fn netns(_ctx: &Context, _cmd: NetnsCmd) -> Result<i32> {
    anyhow::bail!("netns: not implemented yet")
}
