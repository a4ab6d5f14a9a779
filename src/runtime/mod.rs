//! The OCI runtime: bundles, state, and the launch of container processes.
//! It knows nothing of bridges; networks attach through `net` or hooks.

pub mod signal;
pub mod spec;
pub mod state;

use std::path::PathBuf;

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::Context;
pub use state::{State, Status};

/// What `create` and `run --bundle` take besides the id.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// What `exec` takes besides the id.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub process_file: Option<PathBuf>,
    pub tty: bool,
    pub detach: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub args: Vec<String>,
}

pub fn create(_ctx: &Context, _id: &str, _o: &CreateOptions) -> Result<()> {
    todo!()
}
pub fn start(_ctx: &Context, _id: &str) -> Result<()> {
    todo!()
}
pub fn state(_ctx: &Context, _id: &str) -> Result<State> {
    todo!()
}
pub fn kill(_ctx: &Context, _id: &str, _sig: Signal, _all: bool) -> Result<()> {
    todo!()
}
pub fn delete(_ctx: &Context, _id: &str, _force: bool) -> Result<()> {
    todo!()
}
pub fn list(_ctx: &Context) -> Result<Vec<State>> {
    todo!()
}
pub fn pids(_ctx: &Context, _id: &str) -> Result<Vec<i32>> {
    todo!()
}
pub fn run(_ctx: &Context, _id: &str, _o: &CreateOptions, _detach: bool) -> Result<i32> {
    todo!()
}
pub fn exec(_ctx: &Context, _id: &str, _o: ExecOptions) -> Result<i32> {
    todo!()
}
