//! Docker-style container identity: a random 64-hex id, a unique name, and
//! lookup by id, unique id prefix or name.

use std::io::Read;

use anyhow::{bail, Context as _, Result};

use crate::runtime::{self, State};
use crate::Context;

/// Annotations in the container's config.json that carry engine metadata.
pub const NAME: &str = "rcon.name";
pub const IMAGE: &str = "rcon.image";
pub const COMMAND: &str = "rcon.command";

pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Generated ids are 64 hex digits; like docker, show 12. Others stay whole.
pub fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

pub fn name_of(st: &State) -> &str {
    st.annotations.get(NAME).map(String::as_str).unwrap_or(&st.id)
}

/// An exact id, then an exact name, then a unique id prefix.
pub fn resolve(ctx: &Context, key: &str) -> Result<String> {
    if ctx.container_dir(key).join(runtime::state::STATE_FILE).exists() {
        return Ok(key.to_string());
    }
    let all = runtime::list(ctx)?;
    if let Some(st) = all.iter().find(|s| s.annotations.get(NAME).map(String::as_str) == Some(key)) {
        return Ok(st.id.clone());
    }
    let by_prefix: Vec<&State> =
        if key.len() >= 3 { all.iter().filter(|s| s.id.starts_with(key)).collect() } else { Vec::new() };
    match by_prefix.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(crate::error::Error::NotFound(format!("container {key:?} does not exist")).into()),
        _ => bail!("{key:?} matches {} containers: use more of the id", by_prefix.len()),
    }
}
