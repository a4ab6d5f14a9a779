#!/usr/bin/env bash
# Time a pod sandbox's life (create, then remove) with rcon (`rcon pod
# create --network` / `rcon pod rm`) and with netavark + runc doing what
# Podman does for a pod's infra container (a named netns, `netavark setup`
# of it, `runc run -d` of a pause container joining it; then `runc kill`,
# `netavark teardown`, `runc delete -f`, netns delete); and time a container
# joining a running pod: the same OCI bundle with `rcon run -d --bundle` and
# `runc run -d`, and rcon's image path `rcon run -d --pod` as context.
# Writes a section of docs/PERFORMANCE.md.
#
#   hack/bench-pods.sh                 (make bench installs deps and builds first)
#   hack/bench-pods.sh --quick         fewer pods and joins, one round; writes
#                                      only the cache unless BENCH_OUT is set
#   BENCH_PODS_PODS=40                 pods created and removed per tool and round
#   BENCH_PODS_ROUNDS=3                rounds: fresh nodes for each tool, the
#                                      order of the tools alternating
#   BENCH_PODS_JOINS=40                joins (and deletes) of each kind
#   BENCH_PODS_SETTLE=2                seconds of rest after each run
#   BENCH_OUT=/tmp/p.md                write the section somewhere else
#   RCON=PATH RCON_REV=REV NETAVARK=PATH RUNC=PATH   other binaries
#
# Every run gets a fresh world of its own, as in bench-net.sh: a "node"
# network namespace (`ip netns add rcon-bpods-PID-NAME`) in which the tools
# and the timing loop run (nsenter --net), private state dirs under
# /tmp/rcon-bpods-PID, and a "keeper" container netns attached to the
# network for the whole run (not timed), so that no timed call makes or
# removes the bridge. The peer's pod netns are named rcon-bpods-PID-NAME-pI
# (`ip netns add`, as Podman makes them under /run/netns); rcon's live in its
# private netns dir. The machine's root network namespace is never touched.
# All of it is removed at the end and on failure.
#
# Raw times (microseconds, in call order) go to hack/.cache/bench/pods/, the
# section to hack/.cache/bench/pods.md.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

NETAVARK=${NETAVARK:-/usr/lib/podman/netavark}
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
RCON=${RCON:-$repo/target/release/rcon}
NETNS_RUN=/var/run/netns
SUBNET=10.88.0.0/16
GATEWAY=10.88.0.1
NET=bench             # the network's name, for both
BRIDGE=podman-bench   # netavark's bridge (rcon names its own)
SLEEP=(sleep 1000000) # the pause container's and the joining container's process

# --- inside a node: the timed loops ------------------------------------------
# Runs as `bench-pods.sh __inner KIND DIR N NSPREFIX` under nsenter
# --net=NODE: KIND pods-rcon or pods-peer (N pods created and removed, one
# after another) or join (N joins of each kind to one pod). DIR/cns/keeper1
# is the keeper's netns, DIR/bundle the template bundle (rootfs and config
# from hack/mkbundle.sh); the peer's pod netns are NSPREFIX1..N. Writes
# DIR/NAME.us (one duration a line, in call order) and DIR/info.

fail() { # fail WHAT STATUS: the call's stderr
	{
		echo "bench-pods: $KIND: $1 failed (exit status $2):"
		sed 's/^/  | /' "$DIR/err" | head -20
	} >&2
	exit 1
}
# call WHAT CMD...: run CMD (stdin /dev/null, output to DIR/out and DIR/err),
# or fail.
call() {
	local what=$1
	shift
	"$@" </dev/null >"$DIR/out" 2>"$DIR/err" || fail "$what" $?
}
# timed NAME WHAT CMD...: call, timed by the wall clock around the process;
# the µs go to DIR/NAME.us and to $took.
took=0
timed() {
	local name=$1 t0 t1
	shift
	t0=$EPOCHREALTIME
	call "$@"
	t1=$EPOCHREALTIME
	took=$((${t1//[.,]/} - ${t0//[.,]/}))
	echo "$took" >>"$DIR/$name.us"
}
# note KEY VALUE: a line of DIR/info.
note() { echo "$1=$2" >>"$DIR/info"; }

# running PID: is PID there and not a zombie (one waits for its reaper)?
running() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ ${st%% *} != [ZX] ]]
}
# ended PID: wait (up to 2 s) for PID to end, counting in $lingered the pods
# whose process was still running when the removal returned.
lingered=0
ended() {
	local k
	running "$1" || return 0
	lingered=$((lingered + 1))
	for ((k = 0; k < 200; k++)); do
		sleep 0.01
		running "$1" || return 0
	done
	echo "bench-pods: $KIND: the pause process $1 outlived its pod by 2 s" >&2
	exit 1
}

# check_pod NETNS PID (the first pod only, not timed): does the pod's netns
# reach the gateway, and which hostname does its pause process PID see?
check_pod() {
	local ping=ok
	nsenter --net="$1" busybox ping -q -c1 -W2 "$GATEWAY" >/dev/null 2>&1 || ping=failed
	note ping "$ping"
	note hostname "$(nsenter --uts="/proc/$2/ns/uts" hostname 2>/dev/null || echo '?')"
}

# check_joined WHO PID: are PID's net, ipc and uts namespaces the pod's?
check_joined() {
	local t same=ok
	for t in net ipc uts; do
		[[ $(readlink "/proc/$2/ns/$t") == "$(readlink "/proc/$PAUSE/ns/$t")" ]] || same="no ($t differs)"
	done
	note "joined_$1" "$same"
}

# leftovers: what the node and DIR hold after the run's last removal.
leftovers() {
	note veths_left "$(ip -o link show type veth | wc -l)"
	note rules_left "$(count_rules)"
	note tables_left "$(nft list tables 2>/dev/null | sed 's/^table //' | paste -sd, -)"
	# pod netns still mounted: rcon's under DIR (the keeper's is the world's),
	# the peer's under NETNS_RUN
	note netns_left "$(awk -v d="$DIR/" -v k="$DIR/cns/" -v p="$(readlink -f "$NETNS_RUN")/${NSPFX##*/}" '
		/ - nsfs / && ((index($5, d) == 1 && index($5, k) != 1) || index($5, p) == 1) {n++}
		END {print n + 0}' /proc/self/mountinfo)"
	local runc_n=0 rcon_n=0
	if [[ -d $DIR/runc ]]; then runc_n=$("$RUNC" --root "$DIR/runc" list -q | grep -c . || true); fi
	if [[ -n ${RCON_ROOT:-} ]]; then rcon_n=$("$RCON" list -f json | jq length); fi
	note containers_left "$runc_n/$rcon_n"
}

rcon_env() {
	export RCON_ROOT=$DIR/rcon/run RCON_DATA_ROOT=$DIR/rcon/lib RCON_NETNS_DIR=$DIR/rcon/netns
	mkdir -p "$RCON_ROOT" "$RCON_DATA_ROOT" "$RCON_NETNS_DIR"
	# DNS off, as in netavark's options.
	call "rcon network create" "$RCON" network create --disable-dns --subnet "$SUBNET" "$NET"
	call "rcon network attach of the keeper" "$RCON" network attach --netns "$DIR/cns/keeper1" "$NET"
}
rcon_finish() {
	call "rcon network detach of the keeper" "$RCON" network detach --netns "$DIR/cns/keeper1" "$NET"
	call "rcon network rm" "$RCON" network rm "$NET"
	leftovers
}

# pod_pause POD: the pod's pause pid.
pod_pause() { "$RCON" pod inspect "$1" | jq -r .pause.pid; }

pods_rcon() {
	local i pid c
	rcon_env
	for ((i = 1; i <= N; i++)); do
		timed create "pod create p$i" "$RCON" pod create --name "p$i" --network "$NET"
		c=$took
		pid=$(pod_pause "p$i")
		if ((i == 1)); then check_pod "$RCON_NETNS_DIR/p1" "$pid"; fi
		timed rm "pod rm p$i" "$RCON" pod rm "p$i"
		echo $((c + took)) >>"$DIR/cycle.us"
		ended "$pid"
		[[ ! -e $RCON_NETNS_DIR/p$i ]] || fail "pod rm p$i (its netns file is still there)" 0
	done
	note lingered "$lingered"
	rcon_finish
}

# The peer: what Podman does for a pod with an infra container, step by
# step, each a process: the netns, the network (Podman's options, a static
# address: Podman does the IPAM), the pause container; and back.
netavark_setup() { "$NETAVARK" --config "$DIR/netavark" setup "$1" <"$2"; }
netavark_teardown() { "$NETAVARK" --config "$DIR/netavark" teardown "$1" <"$2"; }
runc_() { "$RUNC" --root "$DIR/runc" "$@"; }

pods_peer() {
	local i k ns pid c r
	export NETAVARK_FW=iptables # firewalld is not running; say so, don't probe
	mkdir -p "$DIR/netavark" "$DIR/opts" "$DIR/pods"
	netavark_opts keeper 10.88.0.2 "$NET" "$SUBNET" "$GATEWAY" "$BRIDGE" >"$DIR/opts/keeper.json"
	call "netavark setup of the keeper" netavark_setup "$DIR/cns/keeper1" "$DIR/opts/keeper.json"
	# Each pod's options and bundle, made beforehand (not timed): the pause
	# container in new pid, mount, ipc and uts namespaces, joining the pod's
	# netns by path.
	for ((i = 1; i <= N; i++)); do
		k=$((i + 2))
		netavark_opts "p$i" "10.88.$((k / 256)).$((k % 256))" "$NET" "$SUBNET" "$GATEWAY" "$BRIDGE" >"$DIR/opts/p$i.json"
		mkdir -p "$DIR/pods/p$i"
		jq --arg root "$BUNDLE/rootfs" --arg net "$NETNS_RUN/$NSPFX$i" --arg host "p$i" '
			.root.path = $root | .hostname = $host
			| .linux.namespaces = [{type: "pid"}, {type: "mount"}, {type: "ipc"}, {type: "uts"},
				{type: "network", path: $net}]' "$BUNDLE/config.json" >"$DIR/pods/p$i/config.json"
	done
	for ((i = 1; i <= N; i++)); do
		ns=$NSPFX$i
		timed netns "ip netns add $ns" ip netns add "$ns"
		c=$took
		timed setup "netavark setup of p$i" netavark_setup "$NETNS_RUN/$ns" "$DIR/opts/p$i.json"
		c=$((c + took))
		timed run "runc run -d p$i" runc_ run -d --bundle "$DIR/pods/p$i" "p$i"
		c=$((c + took))
		echo "$c" >>"$DIR/create.us"
		pid=$(runc_ state "p$i" | jq -r .pid)
		if ((i == 1)); then check_pod "$NETNS_RUN/$ns" "$pid"; fi
		timed kill "runc kill p$i" runc_ kill "p$i" KILL
		r=$took
		timed teardown "netavark teardown of p$i" netavark_teardown "$NETNS_RUN/$ns" "$DIR/opts/p$i.json"
		r=$((r + took))
		timed delete "runc delete -f p$i" runc_ delete -f "p$i"
		r=$((r + took))
		timed netns-rm "ip netns delete $ns" ip netns delete "$ns"
		r=$((r + took))
		echo "$r" >>"$DIR/rm.us"
		echo $((c + r)) >>"$DIR/cycle.us"
		ended "$pid"
	done
	note lingered "$lingered"
	call "netavark teardown of the keeper" netavark_teardown "$DIR/cns/keeper1" "$DIR/opts/keeper.json"
	leftovers
}

# One rcon pod; in each round the three kinds of join, in an order that
# turns by one each round, each followed by its container's removal.
join_rcon() {
	timed rcon-join "rcon run -d --bundle rj$1" "$RCON" run -d --bundle "$DIR/join" "rj$1"
	if (($1 == 1)); then check_joined rcon "$("$RCON" state rj1 | jq -r .pid)"; fi
	timed rcon-delete "rcon delete -f rj$1" "$RCON" delete -f "rj$1"
}
join_runc() {
	timed runc-join "runc run -d uj$1" runc_ run -d --bundle "$DIR/join" "uj$1"
	if (($1 == 1)); then check_joined runc "$(runc_ state uj1 | jq -r .pid)"; fi
	timed runc-delete "runc delete -f uj$1" runc_ delete -f "uj$1"
}
join_engine() {
	timed engine-join "rcon run -d --pod jp --name ej$1" "$RCON" run -d --pod jp --name "ej$1" busybox "${SLEEP[@]}"
	if (($1 == 1)); then check_joined engine "$("$RCON" inspect ej1 | jq -r .pid)"; fi
	timed engine-rm "rcon rm -f ej$1" "$RCON" rm -f "ej$1"
}
join() {
	local i s kinds=(rcon runc engine)
	rcon_env
	call "rcon image import" "$RCON" image import "$repo/hack/.cache/busybox-oci" busybox
	call "rcon pod create jp" "$RCON" pod create --name jp --network "$NET"
	"$RCON" pod inspect jp >"$DIR/pod.json"
	PAUSE=$(jq -r .pause.pid "$DIR/pod.json")
	# The joining bundle, the same for rcon and runc: new pid and mount
	# namespaces, the pod's others by path; no hostname (the pod's uts).
	mkdir -p "$DIR/join"
	jq --arg root "$BUNDLE/rootfs" --slurpfile pod "$DIR/pod.json" '
		.root.path = $root | del(.hostname)
		| .linux.namespaces = [{type: "pid"}, {type: "mount"}]
			+ ($pod[0].namespaces | to_entries | map({type: .key, path: .value}))' \
		"$BUNDLE/config.json" >"$DIR/join/config.json"
	for ((i = 1; i <= N; i++)); do
		for ((s = 0; s < 3; s++)); do
			"join_${kinds[(i + s) % 3]}" "$i"
		done
	done
	call "rcon pod rm jp" "$RCON" pod rm jp
	ended "$PAUSE"
	note lingered "$lingered"
	rcon_finish
}

inner() {
	KIND=$1 DIR=$2 N=$3 NSPFX=$4
	BUNDLE=$(readlink -f "$DIR/bundle") # runc wants the rootfs by its real path
	: >"$DIR/info"
	case $KIND in
	pods-rcon) pods_rcon ;;
	pods-peer) pods_peer ;;
	join) join ;;
	esac
}

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh" # the inner run too: count_rules, netavark_opts
bench_dispatch "$@"

# --- outside: worlds, runs, report -------------------------------------------

bench_start bench-pods "$@"
PODS=${BENCH_PODS_PODS:-$([[ -n $quick ]] && echo 5 || echo 40)}
ROUNDS=${BENCH_PODS_ROUNDS:-$([[ -n $quick ]] && echo 1 || echo 3)}
JOINS=${BENCH_PODS_JOINS:-$([[ -n $quick ]] && echo 5 || echo 40)}
SETTLE=${BENCH_PODS_SETTLE:-2}
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/pods
BENCH_TAG=bench-pods

for v in "$PODS" "$ROUNDS" "$JOINS"; do
	if ! [[ $v =~ ^[1-9][0-9]*$ ]] || ((v > 5000)); then
		echo "bench-pods: BENCH_PODS_PODS, _ROUNDS and _JOINS take a number from 1 to 5000, not '$v'" >&2
		exit 2
	fi
done
[[ $SETTLE =~ ^[0-9]+([.][0-9]+)?$ ]] || {
	echo "bench-pods: BENCH_PODS_SETTLE takes seconds, not '$SETTLE'" >&2
	exit 2
}
bench_need ip nsenter unshare setsid nft iptables jq busybox hostname "$RUNC" "$NETAVARK"
bench_need_rcon pod create

# --- the bench world and its cleanup ------------------------------------------
# Names carry our pid (hack/lib/benchworld.sh). A run's pause processes and
# containers hold namespaces, cgroups and mounts: world_stop_procs removes
# them the way they were made, inside their node, before the nodes go.
PREFIX=rcon-bpods
WORLD=/tmp/$PREFIX-$$

# world_stop_procs PID: the containers and pods run PID left (each world dir
# DIR/NAME ran in the node PREFIX-PID-NAME), then any process still in one
# of its netns.
world_stop_procs() {
	local w=/tmp/$PREFIX-$1 bin d node id
	bin=$(world_rcon "$1")
	for d in "$w"/*/; do
		d=${d%/} node=$NETNS_RUN/$PREFIX-$1-${d##*/}
		[[ -e $node ]] || continue
		for id in $("$RUNC" --root "$d/runc" list -q 2>/dev/null); do
			"$RUNC" --root "$d/runc" delete -f "$id" >/dev/null 2>&1 || true
		done
		[[ -d $d/rcon/run ]] || continue
		(
			export RCON_ROOT=$d/rcon/run RCON_DATA_ROOT=$d/rcon/lib RCON_NETNS_DIR=$d/rcon/netns
			for id in $("$bin" pod ls 2>/dev/null | awk 'NR > 1 {print $2}'); do
				nsenter --net="$node" "$bin" pod rm -f "$id" >/dev/null 2>&1 || true
			done
			for id in $("$bin" list -f json 2>/dev/null | jq -r '.[].id' 2>/dev/null); do
				nsenter --net="$node" "$bin" delete -f "$id" >/dev/null 2>&1 || true
			done
		)
	done
	kill_world_procs "$1"
}

bench_world_up
bench_pin_rcon
# The bundle both runtimes start from (a busybox rootfs and `rcon spec`'s
# config, terminal off, running sleep), and the image for `run --pod`.
"$repo/hack/mkbundle.sh" --bundle "$WORLD/bundle" "${SLEEP[@]}" >/dev/null
"$repo/hack/mkimage.sh" >/dev/null

# run_one KIND NAME N: a fresh node PREFIX-$$-NAME with its keeper netns, and
# `__inner KIND` in it. Raw times to $RAW/NAME-*.us, context to $RAW/NAME.info.
run_one() {
	local kind=$1 name=$2 n=$3 dir=$WORLD/$2 node=$PREFIX-$$-$2 t0 t1 f
	mkdir -p "$dir"
	ip netns add "$node"
	netns_baseline "$node"
	ip -n "$node" link set lo up
	make_containers "$dir/cns" 1 keeper
	ln -s "$WORLD/bundle" "$dir/bundle"
	echo "bench-pods: $name ($kind, $n)..."
	t0=$EPOCHREALTIME
	bench_inner "$node" "$kind" "$dir" "$n" "$node-p" || {
		echo "bench-pods: $name failed; no figures written" >&2
		exit 1
	}
	t1=$EPOCHREALTIME
	echo "run_us=$((${t1//[.,]/} - ${t0//[.,]/}))" >>"$dir/info"
	for f in "$dir"/*.us; do cp "$f" "$RAW/$name-${f##*/}"; done
	cp "$dir/info" "$RAW/$name.info"
	# Remove this run's world before the next: the keeper, then the node.
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	ip netns delete "$node"
	sleep "$SETTLE" # the kernel frees namespaces in the background
}

bench_runs_begin
rm -f "$RAW"/*.us "$RAW"/*.info
tools=(rcon peer)
for ((round = 1; round <= ROUNDS; round++)); do
	# rcon first in odd rounds, the peer first in even ones
	for ((t = 0; t < 2; t++)); do
		tool=${tools[(round + t + 1) % 2]}
		run_one "pods-$tool" "r$round-$tool" "$PODS"
	done
done
run_one join join "$JOINS"
bench_runs_end

# All rounds of a tool together: $RAW/TOOL-WHAT.us.
summary=$WORLD/summary.tsv # series, median, p90
: >"$summary"
for tool in "${tools[@]}"; do
	for f in "$RAW/r1-$tool-"*.us; do
		what=${f##*/r1-"$tool"-}
		for ((round = 1; round <= ROUNDS; round++)); do cat "$RAW/r$round-$tool-$what"; done >"$RAW/$tool-$what"
	done
done
for f in "$RAW"/*.us; do
	read -r med p90 < <(median_p "$f" 90)
	printf '%s\t%s\t%s\n' "$(basename "$f" .us)" "$med" "$p90" >>"$summary"
done

# --- the report ---------------------------------------------------------------
# fig SERIES [p90]: the median (or p90) of a series, e.g. rcon-create, join-runc-join
fig() { awk -F'\t' -v s="$1" -v c="${2:-median}" '$1 == s {print c == "p90" ? $3 : $2}' "$summary"; }
info() { # info NAME KEY: a context line of run NAME
	sed -n "s/^$2=//p" "$RAW/$1.info"
}
# row LABEL SERIES...: "| LABEL | median | p90 |" for each series
row() {
	local label=$1 s line
	shift
	line="| $label |"
	for s in "$@"; do line+=" $(fmt_ms "$(fig "$s")") | $(fmt_ms "$(fig "$s" p90)") |"; done
	echo "$line"
}
# ratio_row LABEL A B SERIES...: A ÷ B of each series' median and p90
ratio_row() {
	local label=$1 a=$2 b=$3 s line
	shift 3
	line="| $label |"
	for s in "$@"; do
		line+=" $(ratio "$(fig "$a-$s")" "$(fig "$b-$s")") | $(ratio "$(fig "$a-$s" p90)" "$(fig "$b-$s" p90)") |"
	done
	echo "$line"
}

pods_table() {
	echo "| | create median ms | create p90 ms | rm median ms | rm p90 ms | create + rm median ms | create + rm p90 ms |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	row rcon rcon-create rcon-rm rcon-cycle
	row "netavark + runc" peer-create peer-rm peer-cycle
	ratio_row "netavark + runc ÷ rcon" peer rcon create rm cycle
}

steps_table() {
	echo "| step | command | median ms | p90 ms |"
	echo "|---|---|---:|---:|"
	local s
	while IFS='|' read -r s cmd; do
		printf '| %s | %s | %s | %s |\n' "$s" "$cmd" "$(fmt_ms "$(fig "peer-$s")")" "$(fmt_ms "$(fig "peer-$s" p90)")"
	done <<-'EOF'
		netns|`ip netns add NAME`
		setup|`netavark --config DIR setup /run/netns/NAME < options.json`
		run|`runc run -d --bundle POD ID` (the pause container)
		kill|`runc kill ID KILL`
		teardown|`netavark --config DIR teardown /run/netns/NAME < options.json`
		delete|`runc delete -f ID`
		netns-rm|`ip netns delete NAME`
	EOF
}

join_table() {
	echo "| container joining the pod | join median ms | join p90 ms | join ÷ rcon | removal | removal median ms | removal p90 ms |"
	echo "|---|---:|---:|---:|---|---:|---:|"
	local w j d label rm by
	for w in rcon runc engine; do
		by=—
		case $w in
		rcon) j=rcon-join d=rcon-delete label='`rcon run -d --bundle B ID`' rm='`rcon delete -f ID`' ;;
		runc) j=runc-join d=runc-delete label='`runc run -d --bundle B ID`' rm='`runc delete -f ID`' ;;
		engine) j=engine-join d=engine-rm label='`rcon run -d --pod P busybox sleep …` (context)' rm='`rcon rm -f ID`' ;;
		esac
		if [[ $w != engine ]]; then by=$(ratio "$(fig "join-$j")" "$(fig join-rcon-join)"); fi
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
			"$(fmt_ms "$(fig "join-$j")")" "$(fmt_ms "$(fig "join-$j" p90)")" \
			"$by" \
			"$rm" "$(fmt_ms "$(fig "join-$d")")" "$(fmt_ms "$(fig "join-$d" p90)")"
	done
}

context_table() {
	echo "| run | whole run | create + rm median ms | pause still there when rm returned | ping pod → gateway | pod hostname | after the run: veths / rules / pod netns / containers (runc/rcon) | tables |"
	echo "|---|---:|---:|---:|---|---|---|---|"
	local r tool name
	for ((r = 1; r <= ROUNDS; r++)); do
		for tool in "${tools[@]}"; do
			name=r$r-$tool
			printf '| %s, round %s | %s | %s | %s of %s | %s | %s | %s / %s / %s / %s | %s |\n' \
				"$([[ $tool == rcon ]] && echo rcon || echo "netavark + runc")" "$r" \
				"$(awk -v v="$(info "$name" run_us)" 'BEGIN {printf "%.1f s", v / 1e6}')" \
				"$(fmt_ms "$(median_p "$RAW/$name-cycle.us" 50 | cut -d' ' -f1)")" \
				"$(info "$name" lingered)" "$PODS" "$(info "$name" ping)" "$(info "$name" hostname)" \
				"$(info "$name" veths_left)" "$(info "$name" rules_left)" "$(info "$name" netns_left)" \
				"$(info "$name" containers_left)" "$(t=$(info "$name" tables_left) && echo "${t:-none}")"
		done
	done
}

# Notes that depend on what was seen.
seen_notes() {
	local r tool name v
	for ((r = 1; r <= ROUNDS; r++)); do
		for tool in "${tools[@]}"; do
			name=r$r-$tool
			[[ $(info "$name" ping) == ok ]] || echo "- $name: the first pod could not ping the gateway $GATEWAY."
			for v in veths_left netns_left; do
				[[ $(info "$name" $v) == 0 ]] || echo "- $name: $(info "$name" $v) ${v%_left} left after the run."
			done
			v=$(info "$name" rules_left)
			if [[ $tool == peer && $v != 0 && $r == 1 ]]; then
				echo "- netavark + runc: $v firewall rules left in the node after the keeper's teardown, with no container on the network (netavark's)."
			elif [[ $tool == rcon && $v != 0 ]]; then
				echo "- $name: $v firewall rules left after \`rcon network rm\`."
			fi
		done
	done
	for v in rcon runc engine; do
		[[ $(info join "joined_$v") == ok ]] || echo "- join: the $v container's namespaces: $(info join "joined_$v")."
	done
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
netavark_ver=$("$NETAVARK" --version 2>/dev/null || echo "netavark unknown")
runc_ver=$("$RUNC" --version 2>/dev/null | head -1 || echo "runc unknown")

section=$CACHE/pods.md
{
	cat <<-EOF
		## Pod sandboxes: rcon and netavark + runc

		Generated by [hack/bench-pods.sh](../hack/bench-pods.sh) (run by \`make bench\`).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- rcon $rcon_rev (release build of $rcon_built); $netavark_ver (Debian, iptables driver, \`NETAVARK_FW=iptables\`); $runc_ver (Debian); $(iptables --version)

		What is timed: making a pod sandbox (a network namespace attached to a
		bridge network, with a pause process holding its ipc and uts
		namespaces) and removing it; and a container joining a running pod.

		- **rcon**: \`rcon pod create --name NAME --network bench\`, one
		  process: the netns (bind mounted in rcon's netns dir), rcon's
		  built-in pause process (new ipc and uts namespaces, in that netns,
		  no rootfs), the veth, address and firewall for the pod; then
		  \`rcon pod rm NAME\`: the pause process ended, the network detached,
		  the netns unmounted and removed.
		- **netavark + runc**: what Podman does for a pod's infra container,
		  each step a process: \`ip netns add\`, \`netavark setup\` of that
		  netns with the options Podman passes (bridge network, static
		  address: Podman does the IPAM; DNS off), and \`runc run -d\` of a
		  pause container (busybox \`sleep\`, read-only rootfs, new pid,
		  mount, ipc and uts namespaces, the netns by path); then \`runc
		  kill ID KILL\` (a \`sleep\` as pid 1 ignores TERM), \`netavark
		  teardown\`, \`runc delete -f\`, \`ip netns delete\`, in Podman's
		  order. Each pod's options and config.json are written beforehand
		  (not timed).

		How: each tool runs in a fresh node network namespace (\`nsenter
		--net\`) with its network made first and one other container (a
		"keeper" netns) attached for the whole run, not timed, so that no
		timed call makes or removes the bridge or the network's firewall
		chains. Then $PODS pods, one after another: create, a check (not
		timed), rm, each process timed by the wall clock around it
		(\`\$EPOCHREALTIME\`); for the peer, create and rm are the sums of
		their steps. $ROUNDS round(s), each in fresh nodes, the tools' order
		alternating; the figures are over all rounds (p90 by nearest rank).
		Every call must succeed, or the bench stops without figures. Raw
		times: \`hack/.cache/bench/pods/\`.

		### Create and remove a pod

	EOF
	pods_table
	cat <<-'EOF'

		netavark + runc, step by step (medians and p90s of each step on its
		own, so they do not add up to the medians above):

	EOF
	steps_table
	cat <<-EOF

		### Join a running pod

		One rcon pod (\`rcon pod create --network bench\`) in a fresh node,
		then $JOINS rounds of three containers joining it, in an order that
		turns by one each round, each removed right after its join; the join
		and the removal are timed apart. The OCI rows run the same bundle:
		busybox \`sleep\` on a read-only rootfs, new pid and mount
		namespaces, and the pod's network, ipc and uts namespaces by path
		(\`linux.namespaces[].path\`, from \`rcon pod inspect\`). The last row
		is rcon's image path, which also mounts an overlay on the image's
		rootfs and writes the bundle: context, not compared.

	EOF
	join_table
	cat <<-'EOF'

		### Context (not compared)

		Each run's whole time (checks and setup included), its create + rm
		median, in how many pods the pause process was still running (not
		a zombie) when the removal returned, what the first pod saw (a ping
		from its netns to the gateway, its pause process's hostname), and
		what the node held at the end, after the keeper's detach and, for
		rcon, `network rm`: veths, firewall rules (`nft list ruleset`,
		which shows the iptables-nft rules too), pod netns still mounted,
		containers still known to runc and rcon, and nft tables.

	EOF
	context_table
	cat <<-'EOF'

		### Reading the figures

		- Both sides pay for starting processes (a few ms each for a Rust or
		  Go binary on this machine): rcon one per create and one per rm, the
		  peer three and four. Podman makes and removes the netns inside its
		  own process, so the peer's `ip netns` steps (see the step table)
		  overstate what Podman pays by about a process start each.
		- rcon's create is one process: the netns (`unshare` in a thread,
		  bind mount), its pause (a `clone3` fork of `pod create` itself,
		  born in new ipc and uts namespaces and in the pod's cgroup2
		  group with `CLONE_INTO_CGROUP`, no exec, waited for until it is
		  up; moving it in with a write to `cgroup.procs` cost 6–13 ms,
		  the kernel's threadgroup lock),
		  then the same work as `rcon network attach` (veth, address,
		  routes, one nftables transaction: the attach bench above) and
		  its state. The peer's pause is a container: `runc run
		  -d` sets up a rootfs, mounts, cgroups and pivot_root, and runc
		  forks and execs itself on the way; and `netavark setup` makes
		  its iptables changes with iptables calls that read the tables
		  first. Those two are most of the difference.
		- rcon's rm sends the pause SIGTERM, detaches the network and
		  unmounts and removes the netns. Unlike `rcon network detach`,
		  which leaves the host end of the veth to go with the container's
		  netns, the pod's detach deletes it itself, and the kernel takes
		  several ms to delete a veth (in one `strace -T` of a pod rm,
		  the `RTM_DELLINK` took 13 of its 18 ms). The peer's `netavark
		  teardown` deletes its veth too.
		- `runc delete -f` of a running container polls for its end every
		  100 ms, so in the join table runc's removal is at least 100 ms. In
		  the pod rm the peer runs `runc kill` first, as Podman does, and
		  the pause has ended by the time `runc delete -f` looks, so it
		  takes the fast path. rcon's `pod rm` does not wait for the
		  pause's end; it has ended by the time the rm returns (see the
		  context).
		- Joining a pod is a `run -d` with the net, ipc and uts namespaces
		  joined by path (`setns`) rather than made: for both runtimes
		  about the cost of starting any container (see the lifecycle table
		  at the top). The image path adds an overlay mount, the bundle's
		  config from the image, and on `rm -f` the overlay's unmount
		  (about 10 ms in one `strace -T`) and the removal of its upper
		  dir.
		- One run, sequential, on a shared 2-core VM: compare rows within a
		  table, not with other days.

	EOF
	notes=$(seen_notes)
	if [[ -n $notes ]]; then
		echo "Notes from this run:"
		echo
		printf '%s\n' "$notes"
	fi
} >"$section.new"
bench_section_out bench-pods "$section"
