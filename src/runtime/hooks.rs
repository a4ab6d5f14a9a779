//! OCI hooks: each gets the state JSON on stdin, runs with its own args and
//! env, and is killed when its timeout passes.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::{Hook, Spec};

use crate::sys::spawn::{self, Keep};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }
}

#[allow(deprecated)]
fn hooks_of(spec: &Spec, kind: Kind) -> &[Hook] {
    let Some(h) = spec.hooks().as_ref() else {
        return &[];
    };
    let list = match kind {
        Kind::Prestart => h.prestart(),
        Kind::CreateRuntime => h.create_runtime(),
        Kind::CreateContainer => h.create_container(),
        Kind::StartContainer => h.start_container(),
        Kind::Poststart => h.poststart(),
        Kind::Poststop => h.poststop(),
    };
    list.as_deref().unwrap_or(&[])
}

/// Run every hook of `kind` in order; the first failure stops and is returned.
pub fn run(spec: &Spec, kind: Kind, state_json: &str) -> Result<()> {
    for (i, hook) in hooks_of(spec, kind).iter().enumerate() {
        run_one(hook, state_json).with_context(|| format!("{} hook {i} ({})", kind.name(), hook.path().display()))?;
    }
    Ok(())
}

/// Run the hooks whose failure the spec says to log and ignore.
pub fn run_warn(spec: &Spec, kind: Kind, state_json: &str) {
    for (i, hook) in hooks_of(spec, kind).iter().enumerate() {
        if let Err(e) = run_one(hook, state_json) {
            tracing::warn!("{} hook {i} ({}): {e:#}", kind.name(), hook.path().display());
        }
    }
}

fn run_one(hook: &Hook, state_json: &str) -> Result<()> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args().as_deref() {
        if let Some(argv0) = args.first() {
            cmd.arg0(argv0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or(&[]) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let timeout = hook.timeout().map(|t| Duration::from_secs(t as u64));
    let out = match spawn::run(&mut cmd, Some(state_json.as_bytes()), Keep::STDERR, timeout) {
        Ok(out) => out,
        Err(spawn::Error::Spawn { err, .. }) => return Err(anyhow::Error::new(err).context("spawning")),
        Err(spawn::Error::TimedOut { after, .. }) => bail!("timed out after {}s", after.as_secs()),
        Err(e) => return Err(e.into()),
    };
    let (status, err) = (out.status, String::from_utf8_lossy(&out.stderr));
    if !status.success() {
        let last = err.trim().lines().last().unwrap_or("").to_string();
        bail!("{status}{}{last}", if last.is_empty() { "" } else { ": " });
    }
    Ok(())
}
