//! Docker's resource and security flags of `rcon run`, kept apart from the
//! other run options; engine::confine checks and applies them.

use clap::Args;
use rcon::engine::confine::Flags;

/// The cgroup limits, shared by `rcon run` and `rcon pod create` (whose
/// pod-wide limits parse and fail the same way).
#[derive(Args, Debug, Default)]
pub struct ResourceArgs {
    /// Memory limit: bytes, or with a unit b, k, m, g (docker's; at least 6m).
    #[arg(long, short = 'm', value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap (docker's meaning), -1 for unlimited; needs --memory.
    #[arg(long, value_name = "SIZE")]
    pub memory_swap: Option<String>,
    /// How many CPUs' time to use (a CFS quota over a 100 ms period).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Relative CPU weight (2-262144; docker's default is 1024).
    #[arg(long, short = 'c', value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// The CPUs to run on (0-3,5).
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Most processes and threads at once; 0 or -1 for unlimited.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
}

#[derive(Args, Debug, Default)]
pub struct ConfineArgs {
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// A resource limit: NAME=SOFT[:HARD] (nofile, nproc, core …; -1 unlimited).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// A host device node: HOST[:CTR[:rwm]].
    #[arg(long, value_name = "HOST[:CTR[:rwm]]")]
    pub device: Vec<String>,
    /// Add a capability (NET_ADMIN or CAP_NET_ADMIN; ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (ALL drops every one, before --cap-add).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability and host device, no masked or read-only paths, no
    /// seccomp profile, writable /proc/sys and /sys.
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// A tmpfs: PATH[:OPTS] (docker's noexec,nosuid,nodev unless OPTS say otherwise).
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Bind-mount a host path: HOST:CTR[:ro|rw] (HOST absolute; no named volumes).
    #[arg(long, short = 'v', value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// type=bind|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…].
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
}

impl ConfineArgs {
    /// The first flag given (a bundle's config.json decides these instead).
    pub fn first(&self) -> Option<&'static str> {
        let set = [
            ("--memory", self.resources.memory.is_some()),
            ("--memory-swap", self.resources.memory_swap.is_some()),
            ("--cpus", self.resources.cpus.is_some()),
            ("--cpu-shares", self.resources.cpu_shares.is_some()),
            ("--cpuset-cpus", self.resources.cpuset_cpus.is_some()),
            ("--pids-limit", self.resources.pids_limit.is_some()),
            ("--ulimit", !self.ulimit.is_empty()),
            ("--device", !self.device.is_empty()),
            ("--cap-add", !self.cap_add.is_empty()),
            ("--cap-drop", !self.cap_drop.is_empty()),
            ("--privileged", self.privileged),
            ("--read-only", self.read_only),
            ("--tmpfs", !self.tmpfs.is_empty()),
            ("--volume", !self.volume.is_empty()),
            ("--mount", !self.mount.is_empty()),
        ];
        set.iter().find(|(_, s)| *s).map(|(f, _)| *f)
    }

    pub fn into_flags(self) -> Flags {
        Flags {
            ulimits: self.ulimit,
            devices: self.device,
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            read_only: self.read_only,
            tmpfs: self.tmpfs,
            volumes: self.volume,
            mounts: self.mount,
            ..self.resources.into_flags()
        }
    }
}

impl ResourceArgs {
    /// The limits alone, every other flag unset.
    pub fn into_flags(self) -> Flags {
        Flags {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus,
            pids_limit: self.pids_limit,
            ..Flags::default()
        }
    }
}
