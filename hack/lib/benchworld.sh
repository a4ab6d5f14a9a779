# shellcheck shell=bash
# Throwaway worlds for the network benches (hack/bench-net.sh,
# hack/bench-ports.sh, hack/bench-pods.sh, hack/bench-cluster.sh, hack/bench-etcd.sh): named "node" netns and a temp dir whose names carry
# the run's pid, so that a later run can tell a crashed run's leftovers (pid
# gone) from another run going on now. Source it, then set:
#
#   BENCH_TAG   the script's name, for messages ("bench-net")
#   PREFIX      the prefix of its names ("rcon-bnet"): nodes are
#               $NETNS_RUN/$PREFIX-PID-..., the temp dir /tmp/$PREFIX-PID
#   NETNS_RUN   where `ip netns` keeps its files (/var/run/netns)
#
# A script that starts processes inside a world may define world_stop_procs
# PID: remove_world calls it first, to end what run PID left running (it can
# end with kill_world_procs PID, and find run PID's rcon with world_rcon PID).

# netns_baseline NS: the sysctl baseline (netns-baseline.conf) of every node,
# internet and underlay namespace a bench makes, right after `ip netns add`:
# a new namespace copies ip_forward and friends from the machine's own.
NETNS_BASELINE_CONF=${NETNS_BASELINE_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netns-baseline.conf}
# shellcheck source=SCRIPTDIR/netns-baseline.sh
. "$(dirname "${BASH_SOURCE[0]}")/netns-baseline.sh"

# unmount_below DIR: every mount point at or below DIR, deepest first.
unmount_below() {
	awk -v w="$1" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -ru |
		while read -r m; do umount -l "$(printf '%b' "$m")" 2>/dev/null || true; done
}

# world_rcon PID: the rcon binary run PID used: its pinned copy in its temp
# dir (bench_pin_rcon) while that is there, else $RCON.
world_rcon() {
	if [[ -x /tmp/$PREFIX-$1/rcon ]]; then
		echo "/tmp/$PREFIX-$1/rcon"
	else
		echo "$RCON"
	fi
}

# kill_world_procs PID: SIGKILL every process still in a netns of run PID,
# a node ($NETNS_RUN/PREFIX-PID-*) or a netns file under its temp dir.
kill_world_procs() {
	local nsfs p
	nsfs=$(awk -v w="/tmp/$PREFIX-$1/" -v n="$(readlink -f "$NETNS_RUN")/$PREFIX-$1-" \
		'/ - nsfs / && (index($5, w) == 1 || index($5, n) == 1) {print $4}' /proc/self/mountinfo | sort -u)
	[[ -n $nsfs ]] || return 0
	for p in /proc/[0-9]*; do
		if grep -qxF "$(readlink "$p/ns/net" 2>/dev/null)" <<<"$nsfs"; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
	done
}

# remove_world PID: the nodes and the temp dir of run PID.
remove_world() {
	local pid=$1 f
	if declare -F world_stop_procs >/dev/null; then
		world_stop_procs "$pid"
	fi
	for f in "$NETNS_RUN/$PREFIX-$pid-"*; do
		if [[ -e $f ]]; then ip netns delete "${f##*/}" 2>/dev/null || true; fi
	done
	if [[ -d /tmp/$PREFIX-$pid ]]; then
		unmount_below "/tmp/$PREFIX-$pid"
		rm -rf --one-file-system "/tmp/$PREFIX-$pid" 2>/dev/null ||
			echo "$BENCH_TAG: could not remove /tmp/$PREFIX-$pid" >&2
	fi
}

# sweep_leftovers: remove the worlds of earlier runs that crashed (their pid
# is gone); a run still going on is left alone.
sweep_leftovers() {
	local f pid
	for f in "$NETNS_RUN/$PREFIX-"* /tmp/"$PREFIX"-*; do
		[[ -e $f && ${f##*/} =~ ^$PREFIX-([0-9]+) ]] || continue
		pid=${BASH_REMATCH[1]}
		if [[ $pid != "$$" ]] && ! kill -0 "$pid" 2>/dev/null; then
			echo "$BENCH_TAG: removing leftovers of run $pid"
			remove_world "$pid"
		fi
	done
}

# make_containers DIR N [NAME]: N netns files DIR/NAME1..NAMEN (default NAME
# c; unshare + bind mount, the same kernel objects as `ip netns add`, but
# outside /var/run/netns).
make_containers() {
	local d=$1 n=$2 c=${3:-c} i
	mkdir -p "$d"
	for ((i = 1; i <= n; i++)); do
		: >"$d/$c$i"
		unshare --net="$d/$c$i" true
	done
}

# count_rules: the firewall rules in this netns (nft shows the iptables-nft
# ones too): every line with a handle but the table, chain, set and map
# headers.
count_rules() {
	nft -a list ruleset 2>/dev/null | grep '# handle' | grep -Evc '^\s*(table|chain|set|map|flowtable) ' || true
}

# median_p FILE P: "median pP" of the numbers in FILE, one a line (pP by
# nearest rank: the smallest with at least P% of them at or below it; p99 of
# 20 samples is the slowest).
median_p() {
	sort -n "$1" | awk -v p="$2" '{a[NR] = $1}
		END {
			m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			print m, a[int((p * NR + 99) / 100)]
		}'
}
median_p99() { median_p "$1" 99; }

# fmt_ms US: microseconds as milliseconds for a table ("—" for none).
fmt_ms() { awk -v v="${1:-}" 'BEGIN {if (v == "") print "—"; else {v /= 1000; printf(v < 10 ? "%.2f" : "%.1f", v)}}'; }
# ratio A B: A ÷ B as "1.23×" ("—" when either is missing).
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f×", a / b}'; }

# netavark_opts ID IP NET SUBNET GATEWAY BRIDGE: the options JSON Podman
# passes to `netavark setup` and `teardown` for container ID on the bridge
# network NET: one network, DNS off, and a static address, since Podman does
# the IPAM (netavark 1.4 only applies what it is given).
netavark_opts() {
	printf '{"container_id":"%s","container_name":"%s",' "$1" "$1"
	printf '"networks":{"%s":{"interface_name":"eth0","static_ips":["%s"]}},' "$3" "$2"
	printf '"network_info":{"%s":{"name":"%s","id":"%064d","driver":"bridge",' "$3" "$3" 1
	printf '"network_interface":"%s","subnets":[{"subnet":"%s","gateway":"%s"}],' "$6" "$4" "$5"
	printf '"ipv6_enabled":false,"internal":false,"dns_enabled":false,"ipam_options":{"driver":"host-local"}}}}\n'
}

# bench_dispatch "$@": in a script's inner run (`SCRIPT __inner ARG...`, as
# bench_inner starts it), call the script's own inner ARG... and exit.
bench_dispatch() {
	if [[ ${1:-} == __inner ]]; then
		shift
		inner "$@"
		exit 0
	fi
}

# bench_start NAME "$@": the prelude both benches share. Takes `--quick`
# (sets quick=1) and nothing else; sets OUT, the docs file the section goes
# to ('' for a quick look, unless BENCH_OUT names one); sources mdsection.sh;
# refuses to run without root.
# shellcheck disable=SC2034 # quick and OUT are for the caller
# check_counts TOOL VAR MAX [WHY] COUNT...: every COUNT is a whole number from 1
# to MAX, or the bench stops with one line naming VAR.
check_counts() {
	local tool=$1 var=$2 max=$3 why=$4 n
	shift 4
	for n in "$@"; do
		if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > max)); then
			echo "$tool: bad count '$n' in $var (1..$max$why)" >&2
			exit 2
		fi
	done
}

bench_start() {
	local name=$1
	shift
	quick=''
	if [[ ${1:-} == --quick ]]; then
		quick=1
		shift
	fi
	if [[ $# -gt 0 ]]; then
		echo "usage: $0 [--quick]" >&2
		exit 2
	fi
	if [[ -n $quick && -z ${BENCH_OUT:-} ]]; then
		OUT='' # a quick look is not a figure for the docs
	else
		OUT=${BENCH_OUT:-$repo/docs/PERFORMANCE.md}
	fi
	# shellcheck source=SCRIPTDIR/mdsection.sh
	. "$repo/hack/lib/mdsection.sh"
	[[ $(id -u) -eq 0 ]] || {
		echo "$name: needs root (network namespaces, veths, bridges, firewall rules)" >&2
		exit 1
	}
}

# bench_need TOOL...: exit 1 unless every TOOL is on PATH.
bench_need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || {
			echo "$BENCH_TAG: $tool not found (hack/install-deps.sh --bench)" >&2
			exit 1
		}
	done
}

# bench_need_rcon SUBCOMMAND...: exit 1 unless $RCON is there and knows
# `rcon SUBCOMMAND... --help`.
bench_need_rcon() {
	if [[ ! -x $RCON ]]; then
		echo "$BENCH_TAG: rcon binary not found at $RCON (make build)" >&2
		exit 1
	elif ! "$RCON" "$@" --help >/dev/null 2>&1; then
		echo "$BENCH_TAG: rcon $* not available in this build ($RCON)" >&2
		exit 1
	fi
}

# bench_world_up: the run's traps (on exit the call in progress is ended,
# a whole process group when the timing loop leads one, and the world is
# removed), the sweep of crashed runs' leftovers, and the run's dirs; sets
# root_forward, the root namespace's ip_forward, for bench_runs_end.
# The caller sets inner_pid while its timing loop runs.
inner_pid=''
bench_cleanup() {
	local rc=$?
	if [[ -n $inner_pid ]]; then
		kill -- -"$inner_pid" 2>/dev/null || kill "$inner_pid" 2>/dev/null || true
		wait "$inner_pid" 2>/dev/null || true
	fi
	remove_world $$
	return "$rc"
}
bench_world_up() {
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	sweep_leftovers
	mkdir -p "$WORLD" "$RAW"
	root_forward=$(cat /proc/sys/net/ipv4/ip_forward)
}

# bench_runs_begin and bench_runs_end around the timed runs: load_before and
# started; then total_s (whole seconds) and load_after, and exit 1 if the
# root namespace's ip_forward is not what bench_world_up found.
# shellcheck disable=SC2034 # load_before, total_s and load_after are for the caller
bench_runs_begin() {
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	started=$EPOCHREALTIME
}
# shellcheck disable=SC2034
bench_runs_end() {
	total_s=$(awk -v a="${started//[.,]/}" -v b="${EPOCHREALTIME//[.,]/}" 'BEGIN {printf "%.0f", (b - a) / 1e6}')
	load_after=$(cut -d' ' -f1-3 /proc/loadavg)
	if [[ $(cat /proc/sys/net/ipv4/ip_forward) != "$root_forward" ]]; then
		echo "$BENCH_TAG: the root namespace's ip_forward changed during the run!" >&2
		exit 1
	fi
}

# bench_inner NODE ARG...: `$self __inner ARG...` inside the node netns NODE
# (under $NETNS_RUN), in the background and waited for, so that a signal to
# this script is handled at once; in a session of its own (setsid does not
# fork here: a background child of a script is no group leader), so that
# cleanup can end the whole loop at once. Returns its exit status.
# shellcheck disable=SC2154 # self: the sourcing script's path
bench_inner() {
	local node=$1 rc=0
	shift
	setsid nsenter --net="$NETNS_RUN/$node" -- "$self" __inner "$@" &
	inner_pid=$!
	wait "$inner_pid" || rc=$?
	inner_pid=''
	return "$rc"
}

# bench_pin_rcon: after bench_world_up, copy $RCON into the world and point
# RCON at the copy, so that every call of the run uses one binary whatever a
# rebuild does to target/ meanwhile. Sets rcon_built (when the binary was
# built) and rcon_rev (what from, as far as git can tell, taken now: the tree
# may move on during the run; only the sources count as dirty; RCON_REV
# overrides it).
# shellcheck disable=SC2034 # rcon_built and rcon_rev are for the caller
bench_pin_rcon() {
	cp "$RCON" "$WORLD/rcon"
	rcon_built=$(date -u -r "$RCON" '+%Y-%m-%d %H:%M UTC')
	export RCON=$WORLD/rcon
	if [[ -n ${RCON_REV:-} ]]; then
		rcon_rev=$RCON_REV
		return
	fi
	rcon_rev=$(git -C "$repo" describe --always 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
		rcon_rev+=" with uncommitted changes to src/"
	fi
}

# bench_section_out NAME SECTION: SECTION.new, its runs of blank lines
# squeezed, becomes SECTION; and, unless OUT is '' (bench_start), the section
# NAME of $OUT, placed before "## Where the time goes" the first time.
bench_section_out() {
	local name=$1 section=$2
	cat -s "$section.new" >"$section"
	rm -f "$section.new"
	echo "$name: wrote $section"
	if [[ -n $OUT ]]; then
		md_section_put "$OUT" "$name" "$section" "## Where the time goes"
		echo "$name: updated the $name section of $OUT"
	fi
}

# pick_tools: the tools of $TOOLS that the script's need_tool accepts, in
# the array `tools`. need_tool puts the reason for a refusal in
# skipped[TOOL]; each is printed, and the run stops when no tool is left.
# shellcheck disable=SC2153,SC2154 # TOOLS and skipped belong to the calling script
pick_tools() {
	local t
	tools=()
	for t in $TOOLS; do
		if need_tool "$t"; then tools+=("$t"); else echo "$BENCH_TAG: skipping $t: ${skipped[$t]}" >&2; fi
	done
	((${#tools[@]} > 0)) || {
		echo "$BENCH_TAG: no tool to run" >&2
		exit 1
	}
}

# uplink_up NODE INET: the "internet" netns INET behind a veth uplink of the
# node netns NODE (made in the node by `ip -n`, its peer moved to INET):
# $UPLINK_NODE on the node's up0, $UPLINK_INET on INET's up1, and the node's
# default route through it, as runtime-tests/network.rs net_world.
uplink_up() {
	local node=$1 inet=$2
	ip netns add "$inet"
	netns_baseline "$inet"
	ip -n "$inet" link set lo up
	ip -n "$node" link add up0 type veth peer name up1 netns "$inet"
	ip -n "$node" addr add "$UPLINK_NODE/24" dev up0
	ip -n "$node" link set up0 up
	ip -n "$node" route add default via "$UPLINK_INET"
	ip -n "$inet" addr add "$UPLINK_INET/24" dev up1
	ip -n "$inet" link set up1 up
}

# server_up DIR NETNS PORT [LAST]: hack/lib/listen_server.py listening on
# PORT (to LAST) in the netns file NETNS, in the background; its pid in
# DIR/server.pid (stop_servers ends it). Returns once it listens.
server_up() {
	local dir=$1 k
	nsenter --net="$2" "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/listen_server.py" "$dir/server.ready" "${@:3}" &
	echo $! >"$dir/server.pid"
	for ((k = 0; k < 50; k++)); do
		[[ -e $dir/server.ready ]] && return 0
		sleep 0.1
	done
	echo "$BENCH_TAG: the server in $2 did not start" >&2
	exit 1
}

# stop_servers PID: end the servers run PID started (server_up), checked by
# their command line, which names the world's dir, before the kill. A
# script that uses server_up defines world_stop_procs with it.
stop_servers() {
	local f p
	for f in "/tmp/$PREFIX-$1"/*/server.pid; do
		[[ -f $f ]] || continue
		p=$(<"$f")
		if [[ $p =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "/tmp/$PREFIX-$1/"; then
			kill "$p" 2>/dev/null || true
		fi
	done
}

# count_range COUNT...: "SMALLEST LARGEST" of the counts (one word or more).
count_range() {
	tr ' ' '\n' <<<"$*" | grep . | sort -n | sed -n '1p;$p' | paste -sd' '
}

# need_rcon_client TOOL: note in skipped[TOOL] why a tool that runs rcon and
# the connect client cannot run ($RCON or $PYTHON missing).
# shellcheck disable=SC2154 # skipped belongs to the calling script
need_rcon_client() {
	if [[ ! -x $RCON ]]; then
		skipped[$1]="rcon binary not found at $RCON (make build)"
	elif [[ ! -x $PYTHON ]]; then
		skipped[$1]="$PYTHON not found, for the connect client (hack/install-deps.sh --bench)"
	fi
}

# summarize TOOL N WHAT...: for each WHAT with a raw file ($RAW/TOOL-N-WHAT.us,
# or .ns for connect*), a line "TOOL N WHAT MEDIAN P99" (tabs) to $summary.
# shellcheck disable=SC2154 # RAW and summary belong to the calling script
summarize() {
	local tool=$1 n=$2 what f med p99
	shift 2
	for what in "$@"; do
		f=$RAW/$tool-$n-$what.us
		[[ $what != connect* ]] || f=$RAW/$tool-$n-$what.ns
		[[ -f $f ]] || continue
		read -r med p99 < <(median_p99 "$f")
		printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$what" "$med" "$p99" >>"$summary"
	done
}
