//! Command-line front end. Clap structs live here; each command is a short
//! file that calls one library function and prints the result.

mod completion;
mod confine;
mod docker;
mod events;
mod exec;
mod firewall;
mod image;
mod lifecycle;
mod logging;
mod netns;
mod network;
mod overlay;
mod parse;
mod pod;
mod run;
mod service;
mod spec;
mod table;
mod update;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use rcon::Context;

/// `rcon --version`: the crate's version and the git commit it was built
/// from (build.rs; "unknown" outside git).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("RCON_GIT_COMMIT"), ")");

#[derive(Parser, Debug)]
#[command(name = "rcon", version = VERSION, about = "A small runc-like container runtime whose network subsystem is the point")]
pub struct Cli {
    /// Directory for container state (tmpfs, like runc).
    #[arg(long, global = true, env = "RCON_ROOT", default_value = "/run/rcon")]
    root: PathBuf,
    /// Directory for named network namespaces (shared with `ip netns`).
    #[arg(long, global = true, env = "RCON_NETNS_DIR", default_value = "/var/run/netns")]
    netns_dir: PathBuf,
    /// Directory for persistent data (networks, leases, images).
    #[arg(long, global = true, env = "RCON_DATA_ROOT", default_value = "/var/lib/rcon")]
    data_root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Firewall backend for new networks: nftables or iptables (default: the
    /// data root's config.json `firewall_backend`, else nftables).
    #[arg(long, global = true, env = "RCON_FIREWALL_BACKEND")]
    firewall_backend: Option<rcon::net::firewall::Backend>,
    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility (cgroups are not managed by rcon yet).
    #[arg(long, global = true, hide = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(lifecycle::CreateArgs),
    /// Start the user process of a created container.
    Start(lifecycle::IdArg),
    /// Print the OCI state of a container as JSON.
    State(lifecycle::IdArg),
    /// Send a signal to the container's init (or all its processes).
    Kill(lifecycle::KillArgs),
    /// Delete a container and its state.
    Delete(lifecycle::DeleteArgs),
    /// List containers.
    List(lifecycle::ListArgs),
    /// List the processes of a container.
    Ps(lifecycle::PsArgs),
    /// Run a new process inside a running container.
    Exec(exec::ExecArgs),
    /// Change a running container's cgroup limits (as runc's update).
    Update(update::UpdateArgs),
    /// Print a container's stats and OOM events as JSON (as runc's events).
    Events(events::EventsArgs),
    /// Write a default config.json into a bundle.
    Spec(spec::SpecArgs),
    /// Create, start and wait for a container.
    Run(run::RunArgs),
    /// Named network namespaces (the `ip netns` contract).
    #[command(subcommand)]
    Netns(netns::NetnsCmd),
    /// Show the captured output of a detached container.
    Logs(docker::LogsArgs),
    /// Stop containers: TERM, then KILL after the grace period.
    Stop(docker::StopArgs),
    /// Remove containers (and their overlay, log and name).
    Rm(docker::RmArgs),
    /// The local image store: import, ls, rm.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Fetch an image from an OCI registry into the local store.
    Pull(image::PullArgs),
    /// Networks: create, ls, inspect, rm, connect, disconnect, attach, detach, hook.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Pod sandboxes: create, ls, inspect, stop, rm.
    #[command(subcommand)]
    Pod(pod::PodCmd),
    /// Cross-host pod networks: init, reset, apply, inspect.
    #[command(subcommand)]
    Cluster(overlay::ClusterCmd),
    /// The cluster's peer nodes: add, rm, ls.
    #[command(subcommand)]
    Node(overlay::NodeCmd),
    /// Service virtual IPs: create, ls, inspect, rm, add-backend, rm-backend.
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Show a container with its network interfaces (JSON).
    Inspect { name: String },
    /// List a container's published ports.
    Port { name: String },
    /// Remove what crashed runs left behind: endpoints, leases, veths, rules.
    Gc(network::GcArgs),
    /// rcon's firewall rules: reload (restore them from the records).
    #[command(subcommand)]
    Firewall(firewall::FirewallCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
    /// Write one man page per command into DIR (`make man`).
    #[command(name = "__man", hide = true)]
    Man(completion::ManArgs),
    /// The userspace IPIP data plane of a cluster's ipip backend.
    #[command(hide = true)]
    Ipipd(overlay::IpipdArgs),
    /// The node's resolver for container names (docs/DNS.md); rcon starts and stops it itself.
    Dns(network::DnsDaemonArgs),
}

/// Parse, run, and turn any error into one line on stderr and a non-zero code.
pub fn main() -> i32 {
    rcon::engine::install_network_hook();
    rcon::engine::install_pod_hook();
    let cli = match parse::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("rcon: {}", one_line(&e.to_string()));
            return 2;
        }
    };
    // These two only print what clap knows: no logging, no state, no config.
    let cmd = match cli.cmd {
        Command::Completion(a) => return report(completion::completion(a)),
        Command::Man(a) => return report(completion::man(a)),
        cmd => cmd,
    };
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("rcon: {e:#}");
        return 1;
    }
    // The first timestamp of `--debug`: the bench's phase table starts here.
    tracing::debug!("command line parsed");
    let firewall = match cli.firewall_backend {
        Some(b) => b,
        None => match rcon::context::configured_firewall(&cli.data_root) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("rcon: {e:#}");
                return 1;
            }
        },
    };
    let ctx = Context {
        root: cli.root.clone(),
        netns_dir: cli.netns_dir.clone(),
        data_root: cli.data_root.clone(),
        firewall,
    };
    report(dispatch(&ctx, cmd))
}

/// A command's exit code, or its error as one line on stderr (and in the log) and 1.
fn report(r: anyhow::Result<i32>) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            tracing::error!("{line}");
            eprintln!("rcon: {line}");
            1
        }
    }
}

/// One warning line on stderr per record a listing could not read: the
/// listing itself worked, so the command still exits 0.
pub fn warn_broken<'a>(broken: impl IntoIterator<Item = &'a rcon::store::Broken>) {
    for b in broken {
        eprintln!("rcon: warning: {b}");
    }
}

/// Clap's error, without its usage and help hints, on one line.
fn one_line(text: &str) -> String {
    text.lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

fn dispatch(ctx: &Context, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Create(a) => lifecycle::create(ctx, a),
        Command::Start(a) => lifecycle::start(ctx, a),
        Command::State(a) => lifecycle::state(ctx, a),
        Command::Kill(a) => lifecycle::kill(ctx, a),
        Command::Delete(a) => lifecycle::delete(ctx, a),
        Command::List(a) => lifecycle::list(ctx, a),
        Command::Ps(a) => lifecycle::ps(ctx, a),
        Command::Exec(a) => exec::exec(ctx, a),
        Command::Update(a) => update::update(ctx, a),
        Command::Events(a) => events::events(ctx, a),
        Command::Spec(a) => spec::spec(a),
        Command::Run(a) => run::run(ctx, a),
        Command::Netns(c) => netns::netns(ctx, c),
        Command::Logs(a) => docker::logs(ctx, a),
        Command::Stop(a) => docker::stop(ctx, a),
        Command::Rm(a) => docker::rm(ctx, a),
        Command::Image(c) => image::image(ctx, c),
        Command::Pull(a) => image::pull(ctx, a),
        Command::Network(c) => network::network(ctx, c),
        Command::Service(c) => service::service(ctx, c),
        Command::Pod(c) => pod::pod(ctx, c),
        Command::Cluster(c) => overlay::cluster(ctx, c),
        Command::Node(c) => overlay::node(ctx, c),
        Command::Inspect { name } => network::inspect(ctx, &name),
        Command::Port { name } => network::port(ctx, &name),
        Command::Gc(a) => network::gc(ctx, a),
        Command::Firewall(c) => firewall::firewall(ctx, c),
        Command::Ipipd(a) => overlay::ipipd(a),
        Command::Dns(a) => rcon::net::dns::main(ctx, a.worker),
        Command::Completion(a) => completion::completion(a),
        Command::Man(a) => completion::man(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_commit() {
        let commit = env!("RCON_GIT_COMMIT");
        assert!(
            commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "not a short commit: {commit:?}"
        );
        for flag in ["--version", "-V"] {
            let e = Cli::try_parse_from(["rcon", flag]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
            let want = format!("rcon {} (commit {commit})", env!("CARGO_PKG_VERSION"));
            assert_eq!(e.to_string().trim_end(), want);
        }
    }

    #[test]
    fn completion_takes_a_shell() {
        let cli = Cli::try_parse_from(["rcon", "completion", "zsh"]).unwrap();
        assert!(matches!(
            cli.cmd,
            Command::Completion(completion::CompletionArgs { shell: clap_complete::Shell::Zsh })
        ));
        assert!(Cli::try_parse_from(["rcon", "completion", "tcsh"]).is_err());
        assert!(Cli::try_parse_from(["rcon", "completion"]).is_err());
    }
}
