//! `rcon image import|ls|rm` and `rcon pull`: the local image store.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use rcon::image::Store;
use rcon::Context;

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum ImageCmd {
    /// Import an OCI image layout (dir or tar) or a `docker save` archive.
    Import {
        /// The layout directory or archive file.
        src: PathBuf,
        /// Name to give the image (default: the name(s) in the archive).
        name: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove images by name; their blobs go when no other name uses them.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// `[REGISTRY/]REPO[:TAG|@DIGEST]`, e.g. localhost:5000/busybox.
    reference: String,
    /// Use plain HTTP for this registry (always so for localhost and 127.0.0.0/8).
    #[arg(long)]
    insecure: bool,
}

pub fn image(ctx: &Context, cmd: ImageCmd) -> Result<i32> {
    let store = Store::open(&ctx.data_root)?;
    match cmd {
        ImageCmd::Import { src, name } => {
            for img in store.import(&src, name.as_deref())? {
                println!("{} {}", img.name, short_id(&img.config_digest));
            }
        }
        ImageCmd::Ls { format: Format::Json } => println!("{}", serde_json::to_string_pretty(&store.list()?)?),
        ImageCmd::Ls { format: Format::Table } => {
            let imgs = store.list()?;
            let w = imgs.iter().map(|i| i.name.len()).max().unwrap_or(0).max(4);
            println!("{:w$}  {:12}  SIZE", "NAME", "ID");
            for i in imgs {
                println!("{:w$}  {:12}  {}", i.name, short_id(&i.config_digest), human(i.size));
            }
        }
        ImageCmd::Rm { names } => {
            let mut failed = Vec::new();
            for n in &names {
                match store.remove(n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => failed.push(format!("{e:#}")),
                }
            }
            if !failed.is_empty() {
                bail!("{}", failed.join("; "));
            }
        }
    }
    Ok(0)
}

pub fn pull(ctx: &Context, a: PullArgs) -> Result<i32> {
    let img = Store::open(&ctx.data_root)?.pull(&a.reference, a.insecure)?;
    println!("{} {}", img.name, short_id(&img.config_digest));
    Ok(0)
}

fn short_id(digest: &str) -> &str {
    let h = digest.trim_start_matches("sha256:");
    &h[..h.len().min(12)]
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1}MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}kB", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}
