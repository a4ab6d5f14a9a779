# shellcheck shell=bash
# Throwaway worlds for the network benches (hack/bench-net.sh,
# hack/bench-ports.sh): named "node" netns and a temp dir whose names carry
# the run's pid, so that a later run can tell a crashed run's leftovers (pid
# gone) from another run going on now. Source it, then set:
#
#   BENCH_TAG   the script's name, for messages ("bench-net")
#   PREFIX      the prefix of its names ("rcon-bnet"): nodes are
#               $NETNS_RUN/$PREFIX-PID-..., the temp dir /tmp/$PREFIX-PID
#   NETNS_RUN   where `ip netns` keeps its files (/var/run/netns)
#
# A script that starts processes inside a world may define world_stop_procs
# PID: remove_world calls it first, to end what run PID left running.

# unmount_below DIR: every mount point at or below DIR, deepest first.
unmount_below() {
	awk -v w="$1" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -ru |
		while read -r m; do umount -l "$(printf '%b' "$m")" 2>/dev/null || true; done
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

# median_p99 FILE: "median p99" of the numbers in FILE, one a line (p99 by
# nearest rank: of 20 samples, the slowest).
median_p99() {
	sort -n "$1" | awk '{a[NR] = $1}
		END {
			m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			r = int(0.99 * NR); if (r < 0.99 * NR) r++
			print m, a[r]
		}'
}

# bench_start NAME "$@": the prelude both benches share. Takes `--quick`
# (sets quick=1) and nothing else; sets OUT, the docs file the section goes
# to ('' for a quick look, unless BENCH_OUT names one); sources mdsection.sh;
# refuses to run without root.
# shellcheck disable=SC2034 # quick and OUT are for the caller
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

# bench_world_up: the run's traps (on exit the call in progress is ended,
# a whole process group when the timing loop leads one, and the world is
# removed), the sweep of crashed runs' leftovers, and the run's dirs.
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
}
