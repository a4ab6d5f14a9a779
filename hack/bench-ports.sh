#!/usr/bin/env bash
# Time publishing one more container port (a DNAT mapping) on a node that
# already has 10, 10,000 and 100,000 of them, with rcon (nftables and
# iptables backends) and the CNI portmap plugin (the last two up to 10,000:
# see CAP below); and time TCP connects through a published port with the
# fewest and the most mappings in place, on both rcon backends. Writes a
# section of docs/PERFORMANCE.md.
#
#   hack/bench-ports.sh                 (make bench installs deps and builds first)
#   hack/bench-ports.sh --quick         10, 100 and 1000 mappings, fewer samples;
#                                       writes only the cache unless BENCH_OUT is set
#   BENCH_PORTS_COUNTS="10 10000 100000"  mappings in place before the timed inserts
#   BENCH_PORTS_TOOLS="rcon-nftables rcon-iptables cni"   which tools, in this order
#   BENCH_PORTS_INSERTS=20              timed inserts per (tool, count)
#   BENCH_PORTS_CONNECTS=2000           timed connects per (rcon backend, count)
#                                       and round, at the smallest and the largest count
#   BENCH_PORTS_ROUNDS=3                connect rounds: fresh worlds for the fewest and
#                                       the most mappings, alternately
#   BENCH_PORTS_CHUNK=1000              mappings per container when building them
#   BENCH_PORTS_SETTLE=2                seconds of rest after each run
#   BENCH_OUT=/tmp/p.md                 write the section somewhere else
#   RCON=PATH RCON_REV=REV PYTHON=PATH  other binaries, and what to call rcon
#
# Every (tool, count) run gets a fresh world of its own, as in bench-net.sh: a
# "node" network namespace (`ip netns add rcon-bports-PID-TOOL-N`) in which
# the tool and the timing loops run (nsenter --net), container network
# namespaces (files under /tmp/rcon-bports-PID), private state dirs, and for
# the connect runs an "internet" namespace joined to the node by a veth
# uplink. The machine's root network namespace is never touched. All of it is
# removed at the end and on failure.
#
# Raw times go to hack/.cache/bench/ports/TOOL-N-{insert,bare}.us
# (microseconds, in call order) and TOOL-N-connect-rROUND.ns (nanoseconds),
# the section to hack/.cache/bench/ports.md.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

CNI_DIR=${CNI_DIR:-/usr/lib/cni}
RCON=${RCON:-$repo/target/release/rcon}
PYTHON=${PYTHON:-/usr/bin/python3} # Debian's (install-deps), not whatever is first on PATH
NETNS_RUN=/var/run/netns
SUBNET=10.88.0.0/16
NET=bench          # the network's name, for every tool
HOST_PORT0=20000   # the mappings already in place: 20000, 20001, ... (host = container port)
PROBE_PORT=8080    # the last of them: host port 8080 to the server's port 80
SERVER_PORT=80
INSERT_PORT0=10000 # the timed inserts: host ports 10001, 10002, ... to port 80
# Host ports 20000 to 20000+PER_ADDR-1 on each address: clear of the probe's
# and the inserts' ports and of the ephemeral range (32768 and up). The
# mappings in place are on the node's addresses ADDR_NET.1, .2, ...
# (pub_addr), PER_ADDR each, which the node's lo holds; the probe and the
# inserts on any address (pub_any), which takes a port on every address.
PER_ADDR=12000
ADDR_NET=198.18.0
# The most mappings a tool is run with, and why: the others are left out of
# the larger counts (the tables show "—").
declare -A CAP=([cni]=10000 [rcon-iptables]=10000)
declare -A CAP_WHY=(
	[cni]="the portmap plugin took 392 s to build 10,000 mappings here (an iptables call per rule, and the whole nat table listed four times per ADD)"
	[rcon-iptables]="iptables-save, which every iptables-backend command reads for its damage check, takes 47 s with 100,000 DNAT rules here"
)
UPLINK_NODE=203.0.113.2
UPLINK_INET=203.0.113.1
WARM=20 # connects made before the timed ones (ARP, route and socket caches)

# The server in the probed container (server_up) and the client in the
# internet netns: hack/lib/listen_server.py and connect_client.py (which say
# why they work as they do). CONNECTS ≤ 4000: the server's backlog holds
# every connection.
CLIENT_PY=$repo/hack/lib/connect_client.py

# --- inside a node: building the mappings, the timed calls ------------------
# Runs as `bench-ports.sh __inner TOOL N DIR INET K M CHUNK` under nsenter
# --net=NODE. DIR/cns holds the container netns files: r1.. (the mappings in
# place, CHUNK each), s1 (the probed one), p1..pK (timed inserts) and, for
# rcon, q1..qK (timed attaches without a port). INET is the internet netns
# for the M connects, or "-". Writes DIR/insert.us, DIR/bare.us,
# DIR/connect.ns and DIR/info.

# A tool is three steps per container: join NAME FIRST LAST CTR (not timed:
# what comes before publishing ports FIRST-LAST to CTR..), publish NAME (the
# timed call), remove NAME; plus prepare and finish for the node.
declare -A spec=()

rcon_prepare() {
	export RCON_ROOT=$DIR/rcon/run RCON_DATA_ROOT=$DIR/rcon/lib RCON_NETNS_DIR=$DIR/rcon/netns
	mkdir -p "$RCON_ROOT" "$RCON_DATA_ROOT" "$RCON_NETNS_DIR"
	"$RCON" --firewall-backend "$BACKEND" network create --disable-dns --subnet "$SUBNET" "$NET"
}
# rcon publishes as part of attach: join only notes the -p.
rcon_join() {
	local ip=${5:+$5:}
	if (($2 == $3)); then spec[$1]=$ip$2:$4/tcp; else spec[$1]=$ip$2-$3:$4-$(($4 + $3 - $2))/tcp; fi
}
rcon_publish() { "$RCON" network attach --netns "$DIR/cns/$1" -p "${spec[$1]}" "$NET"; }
rcon_bare() { "$RCON" network attach --netns "$DIR/cns/$1" "$NET"; }
rcon_remove() { "$RCON" network detach --netns "$DIR/cns/$1" "$NET"; }
rcon_finish() { "$RCON" network rm "$NET"; }

# CNI as a runtime chains it: bridge ADD, then portmap ADD with the bridge's
# result as prevResult and the mappings as runtimeConfig.portMappings.
cni_prepare() {
	export CNI_PATH=$CNI_DIR CNI_IFNAME=eth0
	mkdir -p "$DIR/cni"
	printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"cni-bench",' "$NET" >"$DIR/cni/bridge.json"
	printf '"isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"%s","dataDir":"%s"}}\n' \
		"$SUBNET" "$DIR/cni/ipam" >>"$DIR/cni/bridge.json"
}
cni_join() {
	CNI_COMMAND=ADD CNI_CONTAINERID=$1 CNI_NETNS=$DIR/cns/$1 "$CNI_DIR/bridge" <"$DIR/cni/bridge.json" >"$DIR/cni/$1.result"
	jq -cn --arg name "$NET" --argjson first "$2" --argjson last "$3" --argjson ctr "$4" --arg ip "${5:-}" \
		--slurpfile prev "$DIR/cni/$1.result" '{
			cniVersion: "1.0.0", name: $name, type: "portmap", capabilities: {portMappings: true},
			runtimeConfig: {portMappings: [range($first; $last + 1) as $p
				| {hostPort: $p, containerPort: ($ctr + $p - $first), protocol: "tcp"}
				+ (if $ip == "" then {} else {hostIP: $ip} end)]},
			prevResult: $prev[0]}' >"$DIR/cni/$1.portmap"
}
cni_publish() { CNI_COMMAND=ADD CNI_CONTAINERID=$1 CNI_NETNS=$DIR/cns/$1 "$CNI_DIR/portmap" <"$DIR/cni/$1.portmap"; }
# DEL in the reverse order of ADD, as runtimes do.
cni_remove() {
	CNI_COMMAND=DEL CNI_CONTAINERID=$1 CNI_NETNS=$DIR/cns/$1 "$CNI_DIR/portmap" <"$DIR/cni/$1.portmap" &&
		CNI_COMMAND=DEL CNI_CONTAINERID=$1 CNI_NETNS=$DIR/cns/$1 "$CNI_DIR/bridge" <"$DIR/cni/bridge.json"
}
cni_finish() { :; }

fail() { # fail WHAT STATUS: the call's stderr
	{
		echo "bench-ports: $TOOL: $1 failed (exit status $2) with $N mappings in the run:"
		sed 's/^/  | /' "$DIR/err" | head -20
	} >&2
	exit 1
}
call() { # call WHAT CMD...: run CMD (output to DIR/out), or fail
	local what=$1
	shift
	"$@" >"$DIR/out" 2>"$DIR/err" || fail "$what" $?
}

# (count_rules: hack/lib/benchworld.sh)
# Published mappings: rcon's map elements (nftables), or DNAT rules.
count_mappings() {
	if [[ ${BACKEND:-} == nftables ]]; then
		# No table (after `network rm`): no mapping.
		{ nft -j list table ip rcon 2>/dev/null || echo '{"nftables": []}'; } |
			jq '[.nftables[].map | select(. != null and (.name == "pub_any" or .name == "pub_addr")) | .elem // [] | length] | add // 0'
	else
		iptables-save -t nat 2>/dev/null | grep -c -- '-j DNAT' || true
	fi
}
# Where the probed mapping's DNAT rule comes in the walk a new connection
# makes from RCON-PORTS (through any chain it jumps to): "POSITION/DNAT RULES".
probe_position() {
	iptables-save -t nat | awk -v p="--dport $PROBE_PORT " '
		/^-A / {n[$2]++; rule[$2, n[$2]] = $0}
		function walk(c,   i, r, t) {
			for (i = 1; i <= n[c]; i++) {
				r = rule[c, i]
				if (r ~ / -j DNAT/) {
					seen++
					if (index(r, p)) at = seen
				} else if (match(r, / -j [^ ]+/)) {
					t = substr(r, RSTART + 4, RLENGTH - 4)
					if (t in n) walk(t)
				}
			}
		}
		END {walk("RCON-PORTS"); print at "/" seen}'
}

inner() {
	TOOL=$1 N=$2 DIR=$3 INET=$4 K=$5 M=$6 CHUNK=$7
	case $TOOL in
	rcon-nftables) KIND=rcon BACKEND=nftables ;;
	rcon-iptables) KIND=rcon BACKEND=iptables ;;
	cni) KIND=cni BACKEND=iptables ;;
	esac
	local i j=0 first last t0 t1 c
	local -a names=() ins=() bare=()
	: >"$DIR/info"
	t0=$EPOCHREALTIME
	call "prepare" "${KIND}_prepare"
	t1=$EPOCHREALTIME
	echo "prepare_us=$((${t1//[.,]/} - ${t0//[.,]/}))" >>"$DIR/info"

	# The N mappings in place: N-1 in containers of up to CHUNK ports each
	# (mapping m on address m / PER_ADDR + 1, see PER_ADDR), then the probed
	# container's one, so that its DNAT rule comes last.
	local m=0 n_last a ip
	t0=$EPOCHREALTIME
	while ((m <= N - 2)); do
		j=$((j + 1))
		a=$((m / PER_ADDR))
		n_last=$((m + CHUNK - 1))
		((n_last <= N - 2)) || n_last=$((N - 2))
		((n_last < (a + 1) * PER_ADDR)) || n_last=$(((a + 1) * PER_ADDR - 1))
		first=$((HOST_PORT0 + m % PER_ADDR)) last=$((HOST_PORT0 + n_last % PER_ADDR)) ip=$ADDR_NET.$((a + 1))
		call "join of r$j" "${KIND}_join" "r$j" "$first" "$last" "$first" "$ip"
		call "publishing ${ip:+$ip:}$first-$last on r$j" "${KIND}_publish" "r$j"
		names+=("r$j")
		m=$((n_last + 1))
	done
	call "join of s1" "${KIND}_join" s1 "$PROBE_PORT" "$PROBE_PORT" "$SERVER_PORT"
	call "publishing $PROBE_PORT on s1" "${KIND}_publish" s1
	names+=(s1)
	t1=$EPOCHREALTIME
	{
		echo "build_us=$((${t1//[.,]/} - ${t0//[.,]/}))"
		echo "build_containers=$((j + 1))"
		echo "mappings_built=$(count_mappings)"
	} >>"$DIR/info"

	# Connects from the internet netns to the node's uplink address.
	if [[ $INET != - ]]; then
		if [[ $BACKEND == iptables ]]; then echo "probe_rule=$(probe_position)" >>"$DIR/info"; fi
		nsenter --net="$NETNS_RUN/$INET" "$PYTHON" "$CLIENT_PY" "$UPLINK_NODE" "$PROBE_PORT" "$M" "$WARM" \
			"$DIR/connect.ns" 2>"$DIR/err" || fail "connecting to $UPLINK_NODE:$PROBE_PORT from the internet netns" $?
	fi

	# K more single-port publishes, timed; for rcon each is followed by an
	# attach without -p, so that the two are timed under the same conditions.
	for ((i = 1; i <= K; i++)); do
		call "join of p$i" "${KIND}_join" "p$i" $((INSERT_PORT0 + i)) $((INSERT_PORT0 + i)) "$SERVER_PORT"
		t0=$EPOCHREALTIME
		"${KIND}_publish" "p$i" >"$DIR/out" 2>"$DIR/err" || fail "publishing $((INSERT_PORT0 + i)) on p$i" $?
		t1=$EPOCHREALTIME
		ins+=($((${t1//[.,]/} - ${t0//[.,]/})))
		names+=("p$i")
		if [[ $KIND == rcon ]]; then
			t0=$EPOCHREALTIME
			rcon_bare "q$i" >"$DIR/out" 2>"$DIR/err" || fail "attaching q$i without a port" $?
			t1=$EPOCHREALTIME
			bare+=($((${t1//[.,]/} - ${t0//[.,]/})))
			names+=("q$i")
		fi
	done
	if ((${#ins[@]})); then printf '%s\n' "${ins[@]}" >"$DIR/insert.us"; fi
	if ((${#bare[@]})); then printf '%s\n' "${bare[@]}" >"$DIR/bare.us"; fi
	{
		echo "mappings_after=$(count_mappings)"
		echo "rules_after=$(count_rules)"
		echo "veths_after=$(ip -o link show type veth | wc -l)"
	} >>"$DIR/info"

	# Teardown (not timed): every container, then the network. What is left?
	t0=$EPOCHREALTIME
	for c in "${names[@]}"; do call "removing $c" "${KIND}_remove" "$c"; done
	call "finish" "${KIND}_finish"
	t1=$EPOCHREALTIME
	{
		echo "teardown_us=$((${t1//[.,]/} - ${t0//[.,]/}))"
		echo "mappings_left=$(count_mappings)"
		echo "rules_left=$(count_rules)"
		echo "iptables_rules_left=$(iptables-save 2>/dev/null | grep -c '^-A' || true)"
		echo "tables_left=$(nft list tables 2>/dev/null | sed 's/^table //' | paste -sd, -)"
	} >>"$DIR/info"
}

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh" # the inner run too: count_rules
bench_dispatch "$@"

# --- outside: worlds, runs, report -------------------------------------------

bench_start bench-ports "$@"
COUNTS=${BENCH_PORTS_COUNTS:-$([[ -n $quick ]] && echo "10 100 1000" || echo "10 10000 100000")}
TOOLS=${BENCH_PORTS_TOOLS:-rcon-nftables rcon-iptables cni}
INSERTS=${BENCH_PORTS_INSERTS:-$([[ -n $quick ]] && echo 6 || echo 20)}
CONNECTS=${BENCH_PORTS_CONNECTS:-$([[ -n $quick ]] && echo 300 || echo 2000)}
ROUNDS=${BENCH_PORTS_ROUNDS:-$([[ -n $quick ]] && echo 2 || echo 3)}
CHUNK=${BENCH_PORTS_CHUNK:-1000}
SETTLE=${BENCH_PORTS_SETTLE:-2}
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/ports
BENCH_TAG=bench-ports

# At most 250 addresses of PER_ADDR mappings (see PER_ADDR).
# shellcheck disable=SC2086 # one count a word
check_counts bench-ports BENCH_PORTS_COUNTS 3000000 "" $COUNTS
for v in "$INSERTS" "$CONNECTS" "$ROUNDS" "$CHUNK"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || {
		echo "bench-ports: BENCH_PORTS_INSERTS, _CONNECTS, _ROUNDS and _CHUNK take a positive number, not '$v'" >&2
		exit 2
	}
done
if ((INSERTS > 5000 || CONNECTS > 4000)); then
	echo "bench-ports: at most 5000 inserts (host ports 10001 up) and 4000 connects (the server's backlog)" >&2
	exit 2
fi
for t in $TOOLS; do
	case $t in rcon-nftables | rcon-iptables | cni) ;; *)
		echo "bench-ports: unknown tool '$t' in BENCH_PORTS_TOOLS (rcon-nftables, rcon-iptables, cni)" >&2
		exit 2
		;;
	esac
done
bench_need ip nsenter unshare nft iptables iptables-save jq

declare -A skipped=() # tool -> why it has no rows
need_tool() { # need_tool TOOL: true when it can run, else note why not
	case $1 in
	cni) [[ -x $CNI_DIR/bridge && -x $CNI_DIR/host-local && -x $CNI_DIR/portmap ]] ||
		skipped[cni]="$CNI_DIR/bridge, host-local or portmap not found (hack/install-deps.sh --bench)" ;;
	rcon-*)
		need_rcon_client "$1"
		if [[ -z ${skipped[$1]:-} ]] && ! "$RCON" network attach --help 2>/dev/null | grep -q -- --publish; then
			skipped[$1]="rcon network attach -p not available in this build ($RCON)"
		fi
		;;
	esac
	[[ -z ${skipped[$1]:-} ]]
}
pick_tools
# Connects: on the rcon backends, with the fewest and with the most mappings.
# shellcheck disable=SC2086 # one count a word
read -r n_lo n_hi < <(count_range $COUNTS)
n_hi=${n_hi:-$n_lo}

# --- the bench world and its cleanup ------------------------------------------
# Names carry our pid (hack/lib/benchworld.sh); a connect run's server is the
# one process left running inside a world, so its pid is kept there.
PREFIX=rcon-bports
WORLD=/tmp/$PREFIX-$$

# The servers left running in a world (uplink_up, server_up, stop_servers:
# hack/lib/benchworld.sh).
world_stop_procs() { stop_servers "$1"; }
bench_world_up
# Every call of the run uses one copy of the binary, whatever a rebuild does
# to target/ meanwhile.
bench_pin_rcon

# runs TOOL N: is the tool run with N mappings (see CAP)?
runs() { (($2 <= ${CAP[$1]:-$2})); }
# has_connects TOOL N: are connects timed for this pair?
has_connects() { [[ $1 == rcon-* ]] && runs "$1" "$2" && (($2 == n_lo || $2 == n_hi || $2 == ${CAP[$1]:-0})); }

# run_one TOOL N ROUND: a fresh node (and internet netns when connects are
# timed) and fresh containers; the timed loops run inside the node. Round 1
# times inserts and connects, later rounds connects only. Raw times to $RAW,
# context to $RAW/TOOL-N.info (round 1) and TOOL-N-rROUND.info.
run_one() {
	local tool=$1 n=$2 round=$3 dir=$WORLD/$1-$2-r$3 node=$PREFIX-$$-$1-$2-r$3 inet=- k chunks t0 t1 inserts=0
	((round > 1)) || inserts=$INSERTS
	mkdir -p "$dir"
	ip netns add "$node"
	netns_baseline "$node"
	ip -n "$node" link set lo up
	for ((k = 1; k <= (n - 2) / PER_ADDR + 1; k++)); do ip -n "$node" addr add "$ADDR_NET.$k/32" dev lo; done
	chunks=$(((n - 1 + CHUNK - 1) / CHUNK + (n - 2) / PER_ADDR))
	make_containers "$dir/cns" "$chunks" r
	make_containers "$dir/cns" 1 s
	make_containers "$dir/cns" "$inserts" p
	if [[ $tool == rcon-* ]]; then make_containers "$dir/cns" "$inserts" q; fi
	if has_connects "$tool" "$n"; then
		inet=$node-inet
		uplink_up "$node" "$inet"
		# The server listens before the container is attached: the port is
		# published on a netns whose listener is already there.
		server_up "$dir" "$dir/cns/s1" "$SERVER_PORT"
	fi
	if [[ $inet == - ]]; then
		echo "bench-ports: $tool, $n mappings..."
	elif ((inserts)); then
		echo "bench-ports: $tool, $n mappings, $CONNECTS connects (round $round)..."
	else
		echo "bench-ports: $tool, $n mappings, $CONNECTS connects (round $round, no inserts)..."
	fi
	t0=$EPOCHREALTIME
	bench_inner "$node" "$tool" "$n" "$dir" "$inet" "$inserts" "$CONNECTS" "$CHUNK" || {
		echo "bench-ports: $tool with $n mappings failed; no figures written" >&2
		exit 1
	}
	t1=$EPOCHREALTIME
	echo "run_us=$((${t1//[.,]/} - ${t0//[.,]/}))" >>"$dir/info"
	if [[ -f $dir/server.pid ]]; then
		kill "$(<"$dir/server.pid")" 2>/dev/null || true
		wait "$(<"$dir/server.pid")" 2>/dev/null || true
		rm -f "$dir/server.pid"
	fi
	if ((round == 1)); then
		cp "$dir/insert.us" "$RAW/$tool-$n-insert.us"
		if [[ -f $dir/bare.us ]]; then cp "$dir/bare.us" "$RAW/$tool-$n-bare.us"; fi
		cp "$dir/info" "$RAW/$tool-$n.info"
	fi
	if [[ -f $dir/connect.ns ]]; then cp "$dir/connect.ns" "$RAW/$tool-$n-connect-r$round.ns"; fi
	cp "$dir/info" "$RAW/$tool-$n-r$round.info"
	# Remove this run's world before the next: containers, then the nodes.
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	ip netns delete "$node"
	if [[ $inet != - ]]; then ip netns delete "$inet"; fi
	sleep "$SETTLE" # the kernel frees namespaces in the background
}

bench_runs_begin
summary=$WORLD/summary.tsv # tool, n, what (insert, bare, connect, connect-rR), median, p99
: >"$summary"
rm -f "$RAW"/*.us "$RAW"/*.ns "$RAW"/*.info
for n in $COUNTS; do
	for tool in "${tools[@]}"; do
		if runs "$tool" "$n"; then run_one "$tool" "$n" 1; fi
	done
done
# Connect rounds 2.. alternate the fewest and the most mappings, so that a
# drift of the machine over the bench spreads over both rather than
# favouring one (round 1 ran them minutes apart).
for ((round = 2; round <= ROUNDS; round++)); do
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			if has_connects "$tool" "$n"; then run_one "$tool" "$n" "$round"; fi
		done
	done
done
for n in $COUNTS; do
	for tool in "${tools[@]}"; do
		if has_connects "$tool" "$n"; then
			cat "$RAW/$tool-$n-connect-r"*.ns >"$RAW/$tool-$n-connect.ns"
		fi
		# shellcheck disable=SC2046 # one round a word
		summarize "$tool" "$n" insert bare connect $(seq -f 'connect-r%g' 1 "$ROUNDS")
	done
done
bench_runs_end

# --- the report ---------------------------------------------------------------
declare -A name=([rcon-nftables]="rcon-nftables" [rcon-iptables]="rcon-iptables" [cni]="CNI portmap")
runinfo() { # runinfo TOOL N KEY
	sed -n "s/^$3=//p" "$RAW/$1-$2.info" 2>/dev/null
}
# fig TOOL N WHAT COLUMN (median or p99): the figure, or nothing
fig() {
	awk -F'\t' -v t="$1" -v n="$2" -v w="$3" -v c="$4" \
		'$1 == t && $2 == n && $3 == w {print c == "median" ? $4 : $5}' "$summary"
}
# fmt_ms US, fmt_us NS: a figure for a table ("—" for none)
# (fmt_ms and ratio: hack/lib/benchworld.sh)
fmt_us() { awk -v v="${1:-}" 'BEGIN {if (v == "") print "—"; else {v /= 1000; printf(v < 100 ? "%.1f" : "%.0f", v)}}'; }
diff_us() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a == "" || b == "") print ""; else print a - b}'; }

insert_table() {
	echo "| mappings in place | tool | median ms | p99 ms | ÷ at $n_lo | attach without -p, median ms | cost of the mapping ms | ÷ at $n_lo |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|"
	local n tool m p b c m0 c0
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			runs "$tool" "$n" || continue
			m=$(fig "$tool" "$n" insert median) p=$(fig "$tool" "$n" insert p99)
			b=$(fig "$tool" "$n" bare median) c=$(diff_us "$m" "$b")
			m0=$(fig "$tool" "$n_lo" insert median)
			c0=$(diff_us "$m0" "$(fig "$tool" "$n_lo" bare median)")
			printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "${name[$tool]}" \
				"$(fmt_ms "$m")" "$(fmt_ms "$p")" "$(ratio "$m" "$m0")" \
				"$(fmt_ms "$b")" "$(fmt_ms "$c")" "$(ratio "$c" "$c0")"
		done
	done
}

connect_table() {
	echo "| mappings in place | backend | median µs | p99 µs | median ÷ at $n_lo | p99 ÷ at $n_lo | median of each round µs | probed DNAT rule: place in the walk |"
	echo "|---:|---|---:|---:|---:|---:|---:|---|"
	local n tool m p pos r rounds
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			m=$(fig "$tool" "$n" connect median)
			[[ -n $m ]] || continue
			p=$(fig "$tool" "$n" connect p99)
			pos=$(runinfo "$tool" "$n" probe_rule)
			rounds=''
			for ((r = 1; r <= ROUNDS; r++)); do
				rounds+="${rounds:+, }$(fmt_us "$(fig "$tool" "$n" "connect-r$r" median)")"
			done
			printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "${name[$tool]}" \
				"$(fmt_us "$m")" "$(fmt_us "$p")" \
				"$(ratio "$m" "$(fig "$tool" "$n_lo" connect median)")" \
				"$(ratio "$p" "$(fig "$tool" "$n_lo" connect p99)")" \
				"$rounds" \
				"${pos:+${pos%/*} of ${pos#*/}}$([[ -z $pos ]] && echo "— (one map lookup)")"
		done
	done
}

context_table() {
	echo "| mappings | tool | containers holding them | building them | whole run | mappings after the inserts | firewall rules after the inserts | after teardown: mappings / rules / tables |"
	echo "|---:|---|---:|---:|---:|---:|---:|---|"
	local n tool left
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			runs "$tool" "$n" || continue
			left=$(runinfo "$tool" "$n" tables_left)
			printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s / %s |\n' "$n" "${name[$tool]}" \
				"$(runinfo "$tool" "$n" build_containers)" \
				"$(awk -v v="$(runinfo "$tool" "$n" build_us)" 'BEGIN {printf(v < 1e7 ? "%.2f s" : "%.0f s", v / 1e6)}')" \
				"$(awk -v v="$(runinfo "$tool" "$n" run_us)" 'BEGIN {printf "%.1f s", v / 1e6}')" \
				"$(runinfo "$tool" "$n" mappings_after)" "$(runinfo "$tool" "$n" rules_after)" \
				"$(runinfo "$tool" "$n" mappings_left)" "$(runinfo "$tool" "$n" rules_left)" \
				"${left:-none}"
		done
	done
}

# The goals of the ports work, checked against the largest run.
goal_lines() {
	local tool m0 m1 line=''
	[[ $n_hi != "$n_lo" ]] || return 0
	local hi
	for tool in "${tools[@]}"; do
		hi=$n_hi
		runs "$tool" "$hi" || hi=${CAP[$tool]}
		m0=$(fig "$tool" "$n_lo" insert median) m1=$(fig "$tool" "$hi" insert median)
		line+="${line:+, }${name[$tool]} $(ratio "$m1" "$m0") (at $hi)"
	done
	echo "- One more mapping with the most in place, against $n_lo (medians): $line."
	for tool in rcon-nftables rcon-iptables; do
		hi=$n_hi
		runs "$tool" "$hi" || hi=${CAP[$tool]}
		m0=$(fig "$tool" "$n_lo" connect median) m1=$(fig "$tool" "$hi" connect median)
		[[ -n $m0 && -n $m1 ]] || continue
		if [[ $tool == rcon-nftables ]]; then
			echo "- $tool: connect median with $hi mappings $(ratio "$m1" "$m0") the one with $n_lo (goal ≤ 1.1×: $(awk -v a="$m1" -v b="$m0" 'BEGIN {print a <= 1.1 * b ? "met" : "not met"}'))."
		else
			echo "- $tool: connect median with $hi mappings $(ratio "$m1" "$m0") the one with $n_lo."
		fi
	done
}

# Notes that depend on what was seen.
seen_notes() {
	local n tool want got f
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			runs "$tool" "$n" || continue
			got=$(runinfo "$tool" "$n" mappings_built)
			if [[ $got != "$n" ]]; then
				echo "- ${name[$tool]} with $n mappings: $got found in the firewall after building them (expected $n)."
			fi
			want=$((n + INSERTS)) got=$(runinfo "$tool" "$n" mappings_after)
			if [[ $got != "$want" ]]; then
				echo "- ${name[$tool]} with $n mappings: $got found after the $INSERTS inserts (expected $want)."
			fi
			if [[ $tool == rcon-* && ($(runinfo "$tool" "$n" mappings_left) != 0 || $(runinfo "$tool" "$n" rules_left) != 0) ]]; then
				echo "- ${name[$tool]} with $n mappings: teardown left $(runinfo "$tool" "$n" mappings_left) mapping(s) and $(runinfo "$tool" "$n" rules_left) rule(s)."
			fi
			for f in "$RAW/$tool-$n-r"*.info; do
				[[ -f $f && $f != *-r1.info ]] || continue
				got=$(sed -n 's/^mappings_built=//p' "$f")
				if [[ $got != "$n" ]]; then
					f=${f##*-r}
					echo "- ${name[$tool]} with $n mappings, connect round ${f%.info}: $got found in the firewall (expected $n)."
				fi
			done
		done
	done
	for tool in "${!skipped[@]}"; do
		echo "- ${name[$tool]}: not measured: ${skipped[$tool]}."
	done
	if [[ " $TOOLS " != *" cni "* ]]; then
		echo "- CNI portmap: not in this run (BENCH_PORTS_TOOLS); when it is, it stops at ${CAP[cni]} mappings: ${CAP_WHY[cni]}."
	fi
	for tool in "${tools[@]}"; do
		if ! runs "$tool" "$n_hi"; then
			echo "- ${name[$tool]}: run up to ${CAP[$tool]} mappings only: ${CAP_WHY[$tool]}."
		fi
	done
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
cni_ver=$(dpkg-query -W -f='${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
py_ver=$("$PYTHON" --version 2>&1 || echo "python3 unknown")
cni_left=''
if [[ " ${tools[*]} " == *" cni "* ]]; then
	cni_left=$(runinfo cni "$(runs cni "$n_hi" && echo "$n_hi" || echo "${CAP[cni]}")" rules_left)
fi
ranges_hi=$(((n_hi - 1 + CHUNK - 1) / CHUNK))
addrs_hi=$(((n_hi - 2) / PER_ADDR + 1))

section=$CACHE/ports.md
{
	cat <<-EOF
		## Published ports: rcon (nftables, iptables) and the CNI portmap plugin

		Generated by [hack/bench-ports.sh](../hack/bench-ports.sh) (run by \`make bench\`).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- rcon $rcon_rev (release build of $rcon_built); CNI plugins $cni_ver (Debian); $(iptables --version); $(nft --version); $py_ver

		What is timed: publishing one more container port on a node that
		already has N published ports (DNAT mappings), and opening TCP
		connections through one of them from outside the node.

		- **rcon-nftables**: \`rcon network create --disable-dns --subnet $SUBNET bench\`,
		  then \`rcon network attach --netns NETNS -p [IP:]HOST:CTR bench\`: a
		  map element in \`pub_addr\` (or \`pub_any\`) per mapping (and one
		  \`hairpin\` element per container).
		- **rcon-iptables**: the same with \`rcon --firewall-backend iptables
		  network create\`: a DNAT rule per mapping, reached from the
		  \`RCON-PORTS\` chain, and hairpin MASQUERADE rules in
		  \`RCON-POSTROUTING\`; one \`iptables-restore --noflush\` per change.
		- **CNI portmap**: \`$CNI_DIR/portmap\` chained after \`bridge\` (with
		  \`host-local\`, \`isGateway\`, \`ipMasq\`) as a runtime calls it:
		  \`CNI_COMMAND=ADD\`, the bridge's result as \`prevResult\` and the
		  mappings as \`runtimeConfig.portMappings\`; iptables, its default. A
		  chain per container, three rules per mapping, and \`multiport\` entry
		  rules, each added by a separate \`iptables\` call.

		How: every (tool, N) run starts from nothing: a fresh node network
		namespace in which the tool and the whole timing loop run (\`nsenter
		--net\`), and fresh container namespaces made beforehand (not timed).
		The N mappings are built first (not timed), as a runtime would: N−1
		of them by containers publishing a range of up to $CHUNK ports each
		(\`-p A-B:A-B\`, or one portmap ADD with that many \`portMappings\`;
		$ranges_hi such container(s) for N = $n_hi), then one container
		publishing $PROBE_PORT→$SERVER_PORT, the probed one, added last. A
		node address takes at most $PER_ADDR mappings (host ports
		$HOST_PORT0 and up, clear of the ephemeral range), so the N−1 are
		published on addresses of the node's \`lo\`, $ADDR_NET.1 and up (\`-p
		IP:A-B:A-B\`, rcon's \`pub_addr\` map, or portmap's \`hostIP\`;
		$addrs_hi address(es) for N = $n_hi); the probe and the inserts on any
		address (\`pub_any\`). Then $INSERTS
		containers publish one port each, timed one by one (\`\$EPOCHREALTIME\`
		around the process). For rcon, whose \`attach -p\` also makes the
		container's veth and address, each is followed by an \`attach\` without
		\`-p\` of another container, timed the same way: the difference of
		the medians is the cost of the mapping itself. For CNI only the
		portmap ADD is timed; the bridge ADD before it is not. Every call
		must succeed, or the bench stops without figures. Raw times:
		\`hack/.cache/bench/ports/\`.

		### Insert: one more published port

		Median and p99 (nearest rank: of $INSERTS calls, the slowest) of the
		timed call; ratios divide medians of the same tool.

	EOF
	insert_table
	cat <<-EOF

		### Connect through a published port

		With N mappings in place, before the inserts: a listener on port
		$SERVER_PORT in the probed container, an "internet" network namespace
		behind the node's veth uplink ($UPLINK_INET there, $UPLINK_NODE on the
		node, the node's default route through it), and in it a Python client
		making $CONNECTS connections one after another to
		$UPLINK_NODE:$PROBE_PORT (after $WARM untimed ones), timing \`connect()\`
		alone (\`time.perf_counter_ns\`): the SYN's way through the node's
		DNAT to the container, and the SYN-ACK's back. The probed mapping was
		added last, so with iptables its DNAT rule is the last one a new
		connection walks through: the worst case of a linear rule list.

		This is done in $ROUNDS rounds, each in fresh worlds: round 1 in the
		insert runs above, the others after them, alternating the fewest and
		the most mappings. Two worlds made minutes apart differ by several %
		on this VM (a drift of the machine, not of rcon), so one round per N
		cannot tell 1.1× from 1.0×; the figures are over all rounds' connects,
		and the medians of each round show the spread.

		The listener never accepts: the kernel completes the handshake, which
		is all \`connect()\` waits for, while a server that accepts is woken by
		each connection from inside the client's \`connect()\` (a wake-up on
		the other CPU, about 10 µs on this VM, paid or not as the server
		happens to sleep or run), which made the figures bimodal. The client
		ends each connection with a reset (\`SO_LINGER\` 0), so that
		thousands of TIME_WAIT sockets do not pile up in the way of its
		choice of a source port.

	EOF
	connect_table
	cat <<-'EOF'

		### Context (not compared)

		How the N mappings were held and built, the whole run (building,
		connects, inserts, teardown), and the node's firewall: mappings
		(rcon-nftables: `pub_any`/`pub_addr` elements; the others: DNAT
		rules) and all rules (`nft list ruleset`, which shows the iptables-nft
		rules too) after the inserts, and after every container was detached
		(or DEL'd) and, for rcon, the network removed.

	EOF
	context_table
	cat <<-'EOF'

		### Reading the figures

		- Every insert pays for starting a process (a few ms for a Rust or Go
		  binary on this machine) on top of its own work. rcon's timed
		  `attach -p` also makes a veth, an address and routes; the cost of
		  the mapping is the difference of two medians of a few calls each,
		  so a few tenths of a ms either way are noise.
		- Growth with N is the point: an nftables map element is added
		  without reading or rewriting the others, while every iptables
		  change goes through a program that first reads the table from the
		  kernel into its cache, which costs more as the table grows (for
		  rcon one `iptables-restore` per attach, a millisecond or so more at
		  10,000 rules). The CNI portmap plugin (go-iptables) also lists the
		  whole nat table (`iptables -t nat -S`) four times per ADD, and adds
		  each rule with an `iptables -C` and an `iptables -A`: building
		  thousands of mappings takes minutes (see the context).
		- Connect latency: DNAT is decided on a connection's first packet and
		  kept in conntrack, so only new connections pay for the lookup. With
		  iptables the SYN walks every DNAT rule before the probed one (the
		  "probed DNAT rule" column: its place in that walk), then rcon's
		  hairpin rules in `RCON-POSTROUTING`, none of which matches traffic
		  from outside; with nftables it is one hash lookup in a map, at 10
		  mappings as at 10,000.
		- The runs with few and with many mappings are different worlds made
		  one after the other: compare ratios, and expect a few % of noise
		  from the machine (the connect rounds show how much).
		- After teardown rcon leaves no rule and no map element; with the
		  iptables backend, iptables-nft's `ip filter` and `ip nat` tables
		  stay, holding only their empty built-in chains, as after any
		  iptables call.
		- One run, sequential, on a shared 2-core VM: compare rows within a
		  table, not with other days.

	EOF
	notes=$(
		goal_lines
		seen_notes
		if [[ -n $cni_left && $cni_left != 0 ]]; then
			echo "- CNI portmap leaves its shared chains and their jumps after every DEL ($cni_left rules in the node with no container left): they are not per-container rules."
		fi
	)
	if [[ -n $notes ]]; then
		echo "Notes from this run:"
		echo
		printf '%s\n' "$notes"
	fi
} >"$section.new"
bench_section_out bench-ports "$section"
