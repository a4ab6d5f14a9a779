//! Root integration tests: real namespaces, real processes, real packets.
//! Each test builds its own world (see ../shared TESTING rules in
//! docs/TESTING.md) and tears it down on success and on failure.

mod common;
mod netns;
mod lifecycle;
mod namespaces;
mod hooks;
mod console;
mod badinput;
mod examples;
