//! The `rcon` binary: parse, call one library function, print.

// Every `unsafe` says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
