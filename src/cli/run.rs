//! `rcon run`, in both of its forms:
//! - OCI (runc's): `run --bundle DIR [--detach] ID`: create, start, wait.
//! - docker-style: `run [-it] [-d] [--rm] [--name N] … IMAGE [CMD [ARG...]]`.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use rcon::engine::security_opt::SecurityOpts;
use rcon::engine::{self, CgroupNs, Overrides, RunRequest};
use rcon::runtime;
use rcon::Context;

use super::confine::ConfineArgs;
use super::lifecycle::BundleOpts;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub oci: BundleOpts,
    /// Return once the container has started (docker-style: print its id).
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Give the container this terminal's stdin (otherwise it reads /dev/null).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Allocate a pty for the container and make this terminal raw.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// A name for the container (default: the first 12 hex digits of its id).
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy rcon's own).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Working directory inside the container.
    #[arg(long = "workdir", short = 'w')]
    pub workdir: Option<String>,
    /// UID[:GID] or NAME[:GROUP] from the image's /etc/passwd.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Network: a network name (default: bridge), none (a new netns with lo
    /// only), host, ns:PATH or container:NAME. --net and --network are the same.
    #[arg(long = "network", visible_alias = "net")]
    pub net: Option<String>,
    /// A static address on the network.
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The interface's MAC on the network.
    #[arg(long)]
    pub mac: Option<String>,
    /// Publish a container port on the node: [HOSTIP:][HOSTPORT:]CTRPORT[/tcp|udp|sctp],
    /// ranges as 8000-8009:80-89; without HOSTPORT rcon picks a free one (see `rcon port`).
    #[arg(long = "publish", short = 'p')]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, each on a free host port.
    #[arg(long = "publish-all", short = 'P')]
    pub publish_all: bool,
    /// Join a pod: its network, ipc and uts namespaces (and pid, if the pod
    /// shares it). The pod owns the address, the ports and the hostname.
    #[arg(long)]
    pub pod: Option<String>,
    /// `--network-alias`, `--dns`, `--dns-search`, `--dns-option`, `--add-host` (boxed, as `confine`).
    #[command(flatten)]
    pub names: Box<NameArgs>,
    /// The cgroup namespace: private (the default: a new one rooted at the
    /// container's own cgroup) or host (rcon's, showing the whole tree).
    #[arg(long, value_enum)]
    pub cgroupns: Option<CgroupnsMode>,
    /// seccomp=unconfined, seccomp=FILE (a Docker or OCI seccomp profile), or
    /// no-new-privileges[=true|false]. Without seccomp=, rcon's default profile applies.
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Boxed: these flags would make RunArgs the one large Command variant.
    #[command(flatten)]
    pub confine: Box<ConfineArgs>,
    /// With --bundle: the container id. Otherwise: IMAGE [CMD [ARG...]].
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The container's names and resolver files (docs/DNS.md).
#[derive(Args, Debug)]
pub struct NameArgs {
    /// Another name the network's resolver answers with this container's address.
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// A nameserver for the container's resolv.conf (instead of the network's resolver).
    #[arg(long = "dns")]
    pub dns: Vec<std::net::IpAddr>,
    /// A search domain for its resolv.conf ("." for none).
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// An option for its resolv.conf (as ndots:2).
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// A line NAME:IP for its /etc/hosts.
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
}

impl NameArgs {
    /// The first flag given, for the refusal with `--bundle`.
    fn first(&self) -> Option<&'static str> {
        [
            ("--network-alias", self.network_alias.is_empty()),
            ("--dns", self.dns.is_empty()),
            ("--dns-search", self.dns_search.is_empty()),
            ("--dns-option", self.dns_option.is_empty()),
            ("--add-host", self.add_host.is_empty()),
        ]
        .into_iter()
        .find_map(|(flag, unset)| (!unset).then_some(flag))
    }
}

/// docker's `--cgroupns` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupnsMode {
    Private,
    Host,
}

/// The exit status is the container's own, or 128+N when signal N killed it.
pub fn run(ctx: &Context, a: RunArgs) -> Result<i32> {
    if a.oci.bundle.is_some() {
        let [id] = a.args.as_slice() else { bail!("run --bundle takes exactly one container id") };
        if !a.security_opt.is_empty() {
            bail!(
                "--security-opt is for images: a bundle's config.json chooses (linux.seccomp, process.noNewPrivileges)"
            );
        }
        if a.cgroupns.is_some() {
            bail!("--cgroupns is for images: a bundle's config.json chooses (a \"cgroup\" entry in linux.namespaces)");
        }
        if let Some(flag) = a.confine.first().or(a.names.first()) {
            bail!("{flag} is for images: a bundle's config.json sets it");
        }
        return runtime::run(ctx, id, &a.oci.options(), a.detach);
    }
    let (image, cmd) = a.args.split_first().expect("clap requires one argument");
    let req = RunRequest {
        image: image.clone(),
        o: Overrides {
            cmd: cmd.to_vec(),
            env: a.env,
            hostname: a.hostname,
            workdir: a.workdir,
            user: a.user,
            tty: a.tty,
            cgroupns: match a.cgroupns {
                Some(CgroupnsMode::Host) => CgroupNs::Host,
                Some(CgroupnsMode::Private) | None => CgroupNs::Private,
            },
            security: SecurityOpts::parse(&a.security_opt)?,
            confine: (*a.confine).into_flags(),
        },
        name: a.name,
        net: a.net,
        ip: a.ip,
        mac: a.mac.as_deref().map(rcon::net::macaddr::Mac::for_interface).transpose()?,
        ports: a.publish,
        publish_all: a.publish_all,
        detach: a.detach,
        rm: a.rm,
        interactive: a.interactive,
        pod: a.pod,
        aliases: a.names.network_alias,
        dns: rcon::net::dns::resolv::Flags {
            servers: a.names.dns,
            search: a.names.dns_search,
            options: a.names.dns_option,
        },
        add_hosts: a.names.add_host,
    };
    let (id, code) = engine::run(ctx, &req)?;
    if a.detach {
        println!("{id}");
    }
    Ok(code)
}
