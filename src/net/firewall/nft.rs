//! Every nftables command rcon gives, in one place: in-process through
//! libnftables (`sys::nftlib`), or, on a host without the library, through
//! an `nft` child, which is slower and says so once per process.

use std::sync::Once;

use anyhow::Result;

use crate::sys::nftlib::{self, Nft};

/// Apply `script` (what `nft -f -` reads) in one atomic batch.
pub(crate) fn apply(script: &str) -> Result<()> {
    exec(script, false, &["-f", "-"]).map(drop)
}

/// `nft -j list WHAT…` (e.g. `table ip rcon`): the JSON listing.
pub(crate) fn list_json(what: &str) -> Result<String> {
    let cmd = format!("list {what}");
    let args: Vec<&str> = ["-j"].into_iter().chain(cmd.split_whitespace()).collect();
    exec(&cmd, true, &args)
}

/// Whether libnftables is there, so that no `nft` program is needed.
pub fn in_process() -> bool {
    Nft::open().is_some()
}

fn exec(script: &str, json: bool, args: &[&str]) -> Result<String> {
    if let Some(lib) = Nft::open() {
        // One line, as the spawned program's errors read (see `super::run`).
        return lib.run(script, json).map_err(|e| anyhow::anyhow!("nft: {}", super::one_line(&e.0, "failed")));
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        crate::notice::notice(&format!("{} not found: running the nft program instead (slower)", nftlib::SONAME))
    });
    super::run("nft", args, (!json).then_some(script))
}
