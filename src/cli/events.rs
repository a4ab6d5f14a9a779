//! `rcon events`: runc's stats and OOM events, one JSON object per line.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use rcon::runtime;
use rcon::Context;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print stats while streaming (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = interval)]
    pub interval: Duration,
    pub id: String,
}

fn interval(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 5s, 500ms, 1m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?} is not a duration (e.g. 5s, 500ms, 1m)")),
    };
    if d.is_zero() {
        return Err("the interval must be above 0".into());
    }
    Ok(d)
}

pub fn events(ctx: &Context, a: EventsArgs) -> Result<i32> {
    let id = rcon::engine::names::resolve(ctx, &a.id)?;
    if a.stats {
        println!("{}", serde_json::to_string(&runtime::stats(ctx, &id)?)?);
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    runtime::events(ctx, &id, a.interval, |ev| {
        if writeln!(out, "{ev}").and_then(|()| out.flush()).is_err() {
            bail!("stdout closed");
        }
        Ok(())
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(interval("0s").is_err());
        assert!(interval("soon").is_err());
    }
}
