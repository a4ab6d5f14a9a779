//! Every nftables command rcon gives, in one place: in-process through
//! libnftables (`sys::nftlib`), or, on a host without the library (or with
//! `RCON_NFT_PROGRAM=1`, to compare the two or to step around a library that
//! misbehaves), through an `nft` child, which is slower and says so once per
//! process.

use std::sync::{Once, OnceLock};

use anyhow::Result;

use crate::sys::nftlib::{self, Nft};

/// Set to 1: run the `nft` program even where libnftables is installed.
pub const PROGRAM_ENV: &str = "RCON_NFT_PROGRAM";

/// Apply `script` (what `nft -f -` reads) in one atomic batch.
pub(crate) fn apply(script: &str) -> Result<()> {
    exec(script, false, &["-f", "-"]).map(drop)
}

/// `nft -j list WHAT` (e.g. `table ip rcon`): the JSON listing.
pub(crate) fn list_json(what: &str) -> Result<String> {
    let cmd = format!("list {what}");
    let args: Vec<&str> = ["-j"].into_iter().chain(cmd.split_whitespace()).collect();
    exec(&cmd, true, &args)
}

/// Whether nftables is driven in-process, so that no `nft` program is needed.
pub fn in_process() -> bool {
    library().is_some()
}

/// The library, unless it is missing or turned off; why not, otherwise.
fn choice() -> &'static Result<&'static Nft, String> {
    static CHOICE: OnceLock<Result<&'static Nft, String>> = OnceLock::new();
    CHOICE.get_or_init(|| {
        if std::env::var_os(PROGRAM_ENV).is_some_and(|v| v == "1") {
            return Err(format!("{PROGRAM_ENV}=1"));
        }
        Nft::open().ok_or_else(|| format!("{} not found", nftlib::SONAME))
    })
}

fn library() -> Option<&'static Nft> {
    choice().as_ref().ok().copied()
}

fn exec(script: &str, json: bool, args: &[&str]) -> Result<String> {
    let why = match choice() {
        // One line, as the spawned program's errors read (see `super::run`).
        Ok(lib) => {
            return lib.run(script, json).map_err(|e| anyhow::anyhow!("nft: {}", super::one_line(&e.0, "failed")))
        }
        Err(why) => why,
    };
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        crate::notice::notice(&format!("running the nft program instead of libnftables ({why}): slower"))
    });
    super::run("nft", args, (!json).then_some(script))
}
