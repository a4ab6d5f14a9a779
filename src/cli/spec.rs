//! `rcon spec`: write a runc-style default config.json.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rcon::runtime;

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Bundle directory to write config.json into.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
}

pub fn spec(a: SpecArgs) -> Result<i32> {
    runtime::spec::write_default(&a.bundle)?;
    Ok(0)
}
