//! `rcon-cni`: rcon as a CNI plugin (docs/CNI.md). Installed as /opt/cni/bin/rcon.

// Every `unsafe` says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

fn main() {
    std::process::exit(rcon::cni::main());
}
