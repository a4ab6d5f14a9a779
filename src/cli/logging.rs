//! Logging: text or JSON, to stderr or to `--log FILE`.
//!
//! The JSON shape (`level`, `msg`, `time`) is the one runc writes, because
//! containerd's shim reads the last error from that file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use super::LogFormat;

pub fn init(file: Option<&Path>, format: LogFormat, debug: bool) -> Result<()> {
    let max = if debug { Level::DEBUG } else { Level::WARN };
    let out: Box<dyn Write + Send> = match file {
        Some(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {}", p.display()))?,
        ),
        // Errors already reach stderr as one line from main; only log the rest there.
        None => Box::new(std::io::stderr()),
    };
    let to_stderr = file.is_none();
    let layer = LineLayer { out: Mutex::new(out), json: format == LogFormat::Json, max, to_stderr };
    tracing_subscriber::registry().with(layer).try_init().ok();
    Ok(())
}

struct LineLayer {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
    max: Level,
    to_stderr: bool,
}

#[derive(Default)]
struct Fields {
    msg: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra.push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra.push((field.name().to_string(), value.to_string()));
        }
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max || (self.to_stderr && level == Level::ERROR) {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let time = humantime_now();
        let level = level.as_str().to_lowercase();
        let line = if self.json {
            let mut obj = serde_json::json!({"level": level, "msg": f.msg, "time": time});
            for (k, v) in f.extra {
                obj[k] = serde_json::Value::String(v);
            }
            obj.to_string()
        } else {
            let extra: String = f.extra.iter().map(|(k, v)| format!(" {k}={v}")).collect();
            format!("{time} {level} {}{extra}", f.msg)
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// RFC 3339 UTC timestamp without pulling in a date crate.
fn humantime_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rcon::runtime::state::rfc3339(now)
}
