//! The `rcon` binary: parse, call one library function, print.

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
