#!/usr/bin/env bash
# Service VIPs at scale: time creating and removing one more service (10
# backends) on a node that already has 10, 100, 1000 and 10000 of them, and
# TCP connects through a VIP with the fewest and the most in place, with rcon
# (nftables; iptables up to 100: see CAP) and with kube-proxy-style iptables
# chains (written here: no kube-proxy binary is installed; up to 1000). Writes a section
# of docs/PERFORMANCE.md.
#
#   hack/bench-services.sh              (make bench installs deps and builds first)
#   hack/bench-services.sh --quick      10 and 300 services, fewer samples;
#                                       writes only the cache unless BENCH_OUT is set
#   BENCH_SVC_COUNTS="10 100 1000 10000"  services in place before the timed calls
#   BENCH_SVC_TOOLS="rcon-nftables rcon-iptables kube-iptables"
#   BENCH_SVC_CHANGES=10                timed creates (then removes) per (tool, count)
#   BENCH_SVC_CONNECTS=1000             timed connects per batch, at the smallest
#                                       and the largest count
#   BENCH_SVC_BATCHES=3                 connect batches, alternating with the other count's world
#   BENCH_OUT=/tmp/s.md                 write the section somewhere else
#   RCON=PATH RCON_REV=REV PYTHON=PATH  other binaries, and what to call rcon
#
# Every (tool, N) gets a world of its own, as in bench-ports.sh: a "node"
# network namespace (rcon-bsvc-PID-TOOL-N) where the tool runs, container
# namespaces under /tmp/rcon-bsvc-PID, private rcon state, and an "internet"
# namespace behind a veth uplink for the connects. The machine's root network
# namespace is never touched; all of it goes at the end and on failure.
#
# Raw times: hack/.cache/bench/services/TOOL-N-{create,rm}.us and
# TOOL-N-connect.ns; the section: hack/.cache/bench/services.md.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

RCON=${RCON:-$repo/target/release/rcon}
PYTHON=${PYTHON:-/usr/bin/python3}
NETNS_RUN=/var/run/netns
SUBNET=10.88.0.0/16
NET=bench
BACKENDS=10          # backends per service
PORT0=8000           # the probed service's backends: ports 8000..8009 of one container
PROBE_VIP=10.100.0.1 # the probed service, added last: VIP:80
UPLINK_NODE=203.0.113.2
UPLINK_INET=203.0.113.1
WARM=20
CLIENT_PY=$repo/hack/lib/connect_client.py
# The most services a tool is run with, and why.
declare -A CAP=([rcon-iptables]=100 [kube-iptables]=1000)
declare -A CAP_WHY=(
	[kube-iptables]="the one iptables-restore (iptables-nft 1.8.9) of 10,000 services, 310,000 rules in 110,000 chains, was still building its batch after 5 minutes of CPU here"
	[rcon-iptables]="every rcon command on the iptables backend lists the whole ruleset (iptables-save, for its damage check and for the change itself), which takes about 0.5 ms per rule here: with 21 rules per service the build of 10,000 services would take days"
)

# Filler service I (0-based): VIP 10.96.X.Y:80 and backends in the subnet
# (addresses no container holds: they are never connected to).
vip_of() { echo "10.96.$(($1 / 250)).$(($1 % 250 + 1))"; }
backend_of() { echo "10.88.$(($1 / 250 + 1)).$(($1 % 250 + 1))"; }

# --- inside a node -------------------------------------------------------------
# `bench-services.sh __inner PHASE TOOL N DIR INET K M B`, PHASE one of: build
# (N services: N-1 fillers, then the probed one; DIR/info), connect (M
# timed connects: DIR/connect-bB.ns), changes (K creates, then K removes:
# DIR/{create,rm}.us). The world stays between the phases, so that the
# connect batches of the fewest and the most services can alternate.

rcon_env() { export RCON_ROOT=$DIR/rcon/run RCON_DATA_ROOT=$DIR/rcon/lib RCON_NETNS_DIR=$DIR/rcon/netns; }
rcon_prepare() {
	mkdir -p "$RCON_ROOT" "$RCON_DATA_ROOT" "$RCON_NETNS_DIR"
	"$RCON" --firewall-backend "$BACKEND" network create --disable-dns --subnet "$SUBNET" "$NET" >/dev/null
	"$RCON" network attach --netns "$DIR/cns/s1" "$NET" | jq -r '.ip' >"$DIR/s1.ip"
}
# rcon_create NAME VIP BACKEND-IP...: one service, BACKENDS backends.
rcon_create() {
	local name=$1 vip=$2 args=() j=0 b
	shift 2
	for b in "$@"; do
		args+=(--backend "$b:$((PORT0 + j))")
		j=$((j + 1))
	done
	"$RCON" --firewall-backend "$BACKEND" service create "$name" --vip "$vip:80" "${args[@]}" >/dev/null
}
rcon_remove() { "$RCON" service rm "$1" >/dev/null; }
# Fillers: two loops at once (each create holds the service lock for its
# firewall batch; the processes' start and exit overlap).
rcon_build() {
	local half=$(((N - 1) / 2)) lo hi
	for part in 0 1; do
		lo=$((part * half)) hi=$((part ? N - 1 : half))
		(
			for ((i = lo; i < hi; i++)); do
				b=$(backend_of "$i")
				rcon_create "f$i" "$(vip_of "$i")" $(printf "$b %.0s" $(seq $BACKENDS))
			done
		) &
	done
	wait
}

# kube-proxy's iptables mode, as it lays out a ClusterIP service (pkg/proxy/
# iptables/proxier.go): PREROUTING and OUTPUT jump to KUBE-SERVICES, one
# rule per service port there (-d VIP -p tcp --dport) to KUBE-SVC-X, which
# marks traffic from outside the pod range for masquerade and picks an
# endpoint with `statistic --mode random --probability 1/(n-i)`, each to
# KUBE-SEP-Y: `-s EP -j KUBE-MARK-MASQ` (the hairpin), then the DNAT.
# KUBE-POSTROUTING masquerades what carries mark 0x4000. A change is one
# `iptables-restore --noflush` that writes KUBE-SERVICES whole and the
# changed service's chains only (kube-proxy's partial sync).
# PROB[k]: 1/k as kube-proxy prints it (10 decimals), computed once.
mapfile -t PROB < <(awk -v n=$BACKENDS 'BEGIN {print 0; for (k = 1; k <= n; k++) printf "%.10f\n", 1 / k}')
kube_svc() { printf 'KUBE-SVC-%016d' "$1"; }
kube_sep() { printf 'KUBE-SEP-%014d%02d' "$1" "$2"; }
# kube_chains ID VIP EP...: the nat lines of service ID's chains.
kube_chains() {
	local id=$1 vip=$2 svc j n sep ep
	shift 2
	svc=$(kube_svc "$id")
	n=$#
	# Every chain before a rule that jumps to it.
	echo ":$svc - [0:0]"
	for ((j = 0; j < n; j++)); do echo ":$(kube_sep "$id" "$j") - [0:0]"; done
	echo "-A $svc ! -s $SUBNET -d $vip/32 -p tcp -m comment --comment \"bench/s$id:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ"
	j=0
	for ep in "$@"; do
		sep=$(kube_sep "$id" "$j")
		if ((n - j > 1)); then
			echo "-A $svc -m comment --comment \"bench/s$id:http -> $ep:$((PORT0 + j))\" -m statistic --mode random --probability ${PROB[n - j]} -j $sep"
		else
			echo "-A $svc -m comment --comment \"bench/s$id:http -> $ep:$((PORT0 + j))\" -j $sep"
		fi
		echo "-A $sep -s $ep/32 -m comment --comment bench/s$id:http -j KUBE-MARK-MASQ"
		echo "-A $sep -p tcp -m comment --comment bench/s$id:http -m tcp -j DNAT --to-destination $ep:$((PORT0 + j))"
		j=$((j + 1))
	done
}
kube_jump() { echo "-A KUBE-SERVICES -d $2/32 -p tcp -m comment --comment \"bench/s$1:http cluster IP\" -m tcp --dport 80 -j $(kube_svc "$1")"; }
# The services in KUBE-SERVICES: id and VIP, one a line (kube_ids).
kube_services() {
	local sid svip
	echo ":KUBE-SERVICES - [0:0]"
	while read -r sid svip; do kube_jump "$sid" "$svip"; done <"$DIR/kube_ids"
}
kube_prepare() {
	# rcon's iptables backend makes the bridge, the address and forwarding, as
	# a CNI plugin would for kube-proxy; its own chains hold no service.
	BACKEND=iptables rcon_prepare
	{
		echo "*nat"
		echo ":KUBE-SERVICES - [0:0]"
		echo ":KUBE-MARK-MASQ - [0:0]"
		echo ":KUBE-POSTROUTING - [0:0]"
		echo "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
		echo "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
		echo "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
		echo "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"
		echo "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"
		echo "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0"
		echo "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
		echo "COMMIT"
	} | iptables-restore --noflush
	: >"$DIR/kube_ids"
}
# The fillers in one iptables-restore, as kube-proxy's first full sync.
kube_build() {
	local i b
	{
		echo "*nat"
		for ((i = 0; i < N - 1; i++)); do
			b=$(backend_of "$i")
			echo "$i $(vip_of "$i")" >>"$DIR/kube_ids"
			# shellcheck disable=SC2046 # BACKENDS words
			kube_chains "$i" "$(vip_of "$i")" $(printf "$b %.0s" $(seq $BACKENDS))
		done
		kube_services
		echo "COMMIT"
	} >"$DIR/kube_build.rules"
	iptables-restore --noflush <"$DIR/kube_build.rules"
}
# kube_create NAME VIP EP...: a sync that adds service NAME (the fillers are
# 0..N-2, tI is 900000+I, the probe p 999999).
kube_id() {
	case $1 in
	p) echo 999999 ;;
	*) echo $((900000 + ${1//[!0-9]/})) ;;
	esac
}
kube_create() {
	local id vip=$2
	id=$(kube_id "$1")
	shift 2
	echo "$id $vip" >>"$DIR/kube_ids"
	{
		echo "*nat"
		kube_chains "$id" "$vip" "$@"
		kube_services
		echo "COMMIT"
	} | iptables-restore --noflush
}
kube_remove() {
	local id j
	id=$(kube_id "$1")
	grep -v "^$id " "$DIR/kube_ids" >"$DIR/kube_ids.new" || true
	mv "$DIR/kube_ids.new" "$DIR/kube_ids"
	{
		echo "*nat"
		kube_services
		echo ":$(kube_svc "$id") - [0:0]"
		for ((j = 0; j < BACKENDS; j++)); do echo ":$(kube_sep "$id" "$j") - [0:0]"; done
		echo "-X $(kube_svc "$id")"
		for ((j = 0; j < BACKENDS; j++)); do echo "-X $(kube_sep "$id" "$j")"; done
		echo "COMMIT"
	} | iptables-restore --noflush
}

fail() {
	{
		echo "bench-services: $TOOL: $1 failed (exit status $2) with $N services:"
		sed 's/^/  | /' "$DIR/err" | head -20
	} >&2
	exit 1
}

# Where the probe's jump comes among the service jumps of chain $1:
# "POSITION/JUMPS". From nft's listing of that one chain: iptables-save lists
# every rule (47 s for 100,000 here).
probe_position() {
	nft list chain ip nat "$1" 2>/dev/null | awk -v vip="$PROBE_VIP" '
		/ dport / {n++; if (index($0, vip " ")) at = n}
		END {print at "/" n}'
}

inner() {
	local phase=$1
	TOOL=$2 N=$3 DIR=$4 INET=$5 K=$6 M=$7 B=$8
	case $TOOL in
	rcon-nftables) KIND=rcon BACKEND=nftables ;;
	rcon-iptables) KIND=rcon BACKEND=iptables ;;
	kube-iptables) KIND=kube BACKEND=iptables ;;
	esac
	rcon_env
	"inner_$phase"
}

inner_build() {
	local i t0 t1 s1 pos ports=()
	: >"$DIR/info"
	"${KIND}_prepare" >"$DIR/out" 2>"$DIR/err" || fail prepare $?
	s1=$(<"$DIR/s1.ip")
	for ((i = 0; i < BACKENDS; i++)); do ports+=("$s1"); done
	t0=$EPOCHREALTIME
	"${KIND}_build" >"$DIR/out" 2>"$DIR/err" || fail "building $((N - 1)) services" $?
	"${KIND}_create" p "$PROBE_VIP" "${ports[@]}" >"$DIR/out" 2>"$DIR/err" || fail "the probed service" $?
	t1=$EPOCHREALTIME
	echo "build_us=$((${t1//[.,]/} - ${t0//[.,]/}))" >>"$DIR/info"
	case $TOOL in
	rcon-nftables) echo "vips=$(nft -j list set ip rcon svc_all | jq '[.nftables[].set.elem // [] | length] | add')" ;;
	rcon-iptables | kube-iptables)
		pos=$(probe_position "${KIND^^}-SERVICES")
		echo "vips=${pos#*/}" "probe_rule=$pos"
		;;
	esac | tr ' ' '\n' >>"$DIR/info"
}

inner_connect() {
	nsenter --net="$NETNS_RUN/$INET" "$PYTHON" "$CLIENT_PY" "$PROBE_VIP" 80 "$M" "$WARM" "$DIR/connect-b$B.ns" \
		2>"$DIR/err" || fail "connecting to $PROBE_VIP:80 from the internet netns" $?
}

inner_changes() {
	local i t0 t1 b
	local -a cr=() rm=()
	for ((i = 1; i <= K; i++)); do
		b=$(backend_of $((60000 + i)))
		t0=$EPOCHREALTIME
		# shellcheck disable=SC2046 # BACKENDS words
		"${KIND}_create" "t$i" "10.99.0.$i" $(printf "$b %.0s" $(seq $BACKENDS)) >"$DIR/out" 2>"$DIR/err" || fail "creating t$i" $?
		t1=$EPOCHREALTIME
		cr+=($((${t1//[.,]/} - ${t0//[.,]/})))
	done
	for ((i = 1; i <= K; i++)); do
		t0=$EPOCHREALTIME
		"${KIND}_remove" "t$i" >"$DIR/out" 2>"$DIR/err" || fail "removing t$i" $?
		t1=$EPOCHREALTIME
		rm+=($((${t1//[.,]/} - ${t0//[.,]/})))
	done
	printf '%s\n' "${cr[@]}" >"$DIR/create.us"
	printf '%s\n' "${rm[@]}" >"$DIR/rm.us"
}

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh"
bench_dispatch "$@"

# --- outside: worlds, runs, report -------------------------------------------

bench_start bench-services "$@"
COUNTS=${BENCH_SVC_COUNTS:-$([[ -n $quick ]] && echo "10 300" || echo "10 100 1000 10000")}
TOOLS=${BENCH_SVC_TOOLS:-rcon-nftables rcon-iptables kube-iptables}
CHANGES=${BENCH_SVC_CHANGES:-$([[ -n $quick ]] && echo 4 || echo 10)}
CONNECTS=${BENCH_SVC_CONNECTS:-$([[ -n $quick ]] && echo 300 || echo 1000)}
BATCHES=${BENCH_SVC_BATCHES:-$([[ -n $quick ]] && echo 2 || echo 3)}
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/services
BENCH_TAG=bench-services
PREFIX=rcon-bsvc
WORLD=/tmp/$PREFIX-$$

# shellcheck disable=SC2086 # one count a word
check_counts bench-services BENCH_SVC_COUNTS 60000 "" $COUNTS
for v in "$CHANGES" "$CONNECTS" "$BATCHES"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || {
		echo "bench-services: BENCH_SVC_CHANGES, _CONNECTS and _BATCHES take a positive number, not '$v'" >&2
		exit 2
	}
done
((CHANGES <= 250 && CONNECTS * BATCHES <= 4000)) || {
	echo "bench-services: at most 250 changes, and 4000 connects in all (the server's backlog)" >&2
	exit 2
}
bench_need ip nsenter unshare nft iptables iptables-save iptables-restore jq
declare -A skipped=()
need_tool() {
	case $1 in
	rcon-nftables | rcon-iptables | kube-iptables) need_rcon_client "$1" ;;
	*) skipped[$1]="unknown tool (rcon-nftables, rcon-iptables, kube-iptables)" ;;
	esac
	[[ -z ${skipped[$1]:-} ]]
}
pick_tools
# shellcheck disable=SC2086 # one count a word
read -r n_lo n_hi < <(count_range $COUNTS)
n_hi=${n_hi:-$n_lo}
runs() { (($2 <= ${CAP[$1]:-$2})); }
# Connects at the smallest count and the largest each tool runs.
has_connects() { runs "$1" "$2" && (($2 == n_lo || $2 == n_hi || $2 == ${CAP[$1]:-0})); }

# The servers left running in a world (uplink_up, server_up, stop_servers:
# hack/lib/benchworld.sh).
world_stop_procs() { stop_servers "$1"; }

bench_world_up
bench_pin_rcon

# world_up TOOL N: a fresh node, internet netns (when connects are timed)
# and probed container, with its server.
world_up() {
	local tool=$1 n=$2 dir=$WORLD/$1-$2 node=$PREFIX-$$-$1-$2
	mkdir -p "$dir"
	ip netns add "$node"
	netns_baseline "$node"
	ip -n "$node" link set lo up
	make_containers "$dir/cns" 1 s
	has_connects "$tool" "$n" || return 0
	uplink_up "$node" "$node-inet"
	ip -n "$node-inet" route add "$PROBE_VIP/32" via "$UPLINK_NODE"
	server_up "$dir" "$dir/cns/s1" "$PORT0" $((PORT0 + BACKENDS - 1))
}

# phase PHASE TOOL N [BATCH]: one phase of the inner run in TOOL's node for N.
phase() {
	local node=$PREFIX-$$-$2-$3 inet=-
	if has_connects "$2" "$3"; then inet=$node-inet; fi
	bench_inner "$node" "$1" "$2" "$3" "$WORLD/$2-$3" "$inet" "$CHANGES" "$CONNECTS" "${4:-0}" || {
		echo "bench-services: $2 with $3 services: $1 failed; no figures written" >&2
		exit 1
	}
}

# world_down TOOL N: its figures to $RAW, and the world gone.
world_down() {
	local tool=$1 n=$2 dir=$WORLD/$1-$2 node=$PREFIX-$$-$1-$2 f
	if [[ -f $dir/server.pid ]]; then
		kill "$(<"$dir/server.pid")" 2>/dev/null || true
		wait "$(<"$dir/server.pid")" 2>/dev/null || true
		rm -f "$dir/server.pid"
	fi
	cp "$dir/create.us" "$RAW/$tool-$n-create.us"
	cp "$dir/rm.us" "$RAW/$tool-$n-rm.us"
	cp "$dir/info" "$RAW/$tool-$n.info"
	if [[ -f $dir/connect-b1.ns ]]; then
		for f in "$dir"/connect-b*.ns; do cp "$f" "$RAW/$tool-$n-${f##*/}"; done
		cat "$dir"/connect-b*.ns >"$RAW/$tool-$n-connect.ns"
	fi
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	ip netns delete "$node"
	if [[ -e $NETNS_RUN/$node-inet ]]; then ip netns delete "$node-inet"; fi
	sleep 2
}

bench_runs_begin
rm -f "$RAW"/*.us "$RAW"/*.ns "$RAW"/*.info
summary=$WORLD/summary.tsv
: >"$summary"
# Worlds without connects one after the other; those with connects (the
# fewest and the most services of each tool) are all built first, and their
# connect batches alternate, so that a drift of the machine spreads over
# both rather than favouring one.
connected=()
for n in $COUNTS; do
	for tool in "${tools[@]}"; do
		runs "$tool" "$n" || continue
		echo "bench-services: $tool, $n services: building..."
		world_up "$tool" "$n"
		phase build "$tool" "$n"
		if has_connects "$tool" "$n"; then
			connected+=("$tool $n")
		else
			phase changes "$tool" "$n"
			world_down "$tool" "$n"
		fi
	done
done
for ((b = 1; b <= BATCHES; b++)); do
	for w in "${connected[@]}"; do
		echo "bench-services: ${w% *}, ${w#* } services: $CONNECTS connects (batch $b)..."
		# shellcheck disable=SC2086 # tool and count
		phase connect $w "$b"
	done
done
for w in "${connected[@]}"; do
	# shellcheck disable=SC2086
	phase changes $w
	# shellcheck disable=SC2086
	world_down $w
done
for n in $COUNTS; do
	for tool in "${tools[@]}"; do
		# shellcheck disable=SC2046 # one batch a word
		summarize "$tool" "$n" create rm connect $(seq -f 'connect-b%g' 1 "$BATCHES")
	done
done
bench_runs_end

# --- the report ---------------------------------------------------------------
runinfo() { sed -n "s/^$3=//p" "$RAW/$1-$2.info" 2>/dev/null; }
fig() {
	awk -F'\t' -v t="$1" -v n="$2" -v w="$3" -v c="$4" \
		'$1 == t && $2 == n && $3 == w {print c == "median" ? $4 : $5}' "$summary"
}
fmt_us() { awk -v v="${1:-}" 'BEGIN {if (v == "") print "—"; else {v /= 1000; printf(v < 100 ? "%.1f" : "%.0f", v)}}'; }

change_table() {
	echo "| services in place | tool | create median ms | p99 ms | ÷ at $n_lo | rm median ms | p99 ms | ÷ at $n_lo |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|"
	local n tool
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			runs "$tool" "$n" || continue
			printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$tool" \
				"$(fmt_ms "$(fig "$tool" "$n" create median)")" "$(fmt_ms "$(fig "$tool" "$n" create p99)")" \
				"$(ratio "$(fig "$tool" "$n" create median)" "$(fig "$tool" "$n_lo" create median)")" \
				"$(fmt_ms "$(fig "$tool" "$n" rm median)")" "$(fmt_ms "$(fig "$tool" "$n" rm p99)")" \
				"$(ratio "$(fig "$tool" "$n" rm median)" "$(fig "$tool" "$n_lo" rm median)")"
		done
	done
}

connect_table() {
	echo "| services in place | tool | median µs | p99 µs | median ÷ at $n_lo | median of each batch µs | the probe's jump: place among the service jumps |"
	echo "|---:|---|---:|---:|---:|---|---|"
	local n tool m i batches pos
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			m=$(fig "$tool" "$n" connect median)
			[[ -n $m ]] || continue
			batches=''
			for ((i = 1; i <= BATCHES; i++)); do batches+="${batches:+, }$(fmt_us "$(fig "$tool" "$n" "connect-b$i" median)")"; done
			pos=$(runinfo "$tool" "$n" probe_rule)
			printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$tool" "$(fmt_us "$m")" \
				"$(fmt_us "$(fig "$tool" "$n" connect p99)")" "$(ratio "$m" "$(fig "$tool" "$n_lo" connect median)")" \
				"$batches" "${pos:+${pos%/*} of ${pos#*/}}$([[ -z $pos ]] && echo "— (map lookups)")"
		done
	done
}

context_table() {
	echo "| services | tool | building them | VIPs found |"
	echo "|---:|---|---:|---:|"
	local n tool
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			runs "$tool" "$n" || continue
			printf '| %s | %s | %s | %s |\n' "$n" "$tool" \
				"$(awk -v v="$(runinfo "$tool" "$n" build_us)" 'BEGIN {printf(v < 1e7 ? "%.2f s" : "%.0f s", v / 1e6)}')" \
				"$(runinfo "$tool" "$n" vips)"
		done
	done
}

goal_lines() {
	local tool hi m0 m1
	for tool in "${tools[@]}"; do
		hi=$n_hi
		runs "$tool" "$hi" || hi=${CAP[$tool]}
		m0=$(fig "$tool" "$n_lo" connect median) m1=$(fig "$tool" "$hi" connect median)
		[[ -n $m0 && -n $m1 ]] || continue
		echo "- $tool: with $hi services, create $(ratio "$(fig "$tool" "$hi" create median)" "$(fig "$tool" "$n_lo" create median)"), rm $(ratio "$(fig "$tool" "$hi" rm median)" "$(fig "$tool" "$n_lo" rm median)") and connect $(ratio "$m1" "$m0") their medians with $n_lo$([[ $tool == rcon-nftables ]] && awk -v a="$m1" -v b="$m0" 'BEGIN {print a <= 1.1 * b ? " (connect goal ≤ 1.1×: met)" : " (connect goal ≤ 1.1×: not met)"}')."
	done
	for tool in "${tools[@]}"; do
		if ! runs "$tool" "$n_hi"; then echo "- $tool: run up to ${CAP[$tool]} services only: ${CAP_WHY[$tool]}."; fi
		want=$(runinfo "$tool" "$n_hi" vips)
		if runs "$tool" "$n_hi" && [[ $want != "$n_hi" ]]; then echo "- $tool with $n_hi services: $want VIPs found after building them."; fi
	done
	for tool in "${!skipped[@]}"; do echo "- $tool: not measured: ${skipped[$tool]}."; done
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
section=$CACHE/services.md
{
	cat <<-EOF
		## Service VIPs: rcon (nftables, iptables) and kube-proxy-style iptables chains

		Generated by [hack/bench-services.sh](../hack/bench-services.sh) (run by \`make bench\`).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- rcon $rcon_rev (release build of $rcon_built); $(iptables --version); $(nft --version)

		What is timed, with N services of $BACKENDS backends each in place:
		creating one more service (and then removing it), and TCP connects
		from outside the node to a VIP.

		rcon's network is made with \`--disable-dns\`, as in the other
		benches: with its resolver on, \`service rm\` waits until the resolver
		has read every record again (165 ms with 10,000 services here, 12 ms
		with 10), which is the resolver's cost, not the firewall's.

		- **rcon-nftables**: \`rcon service create NAME --vip VIP:80
		  --backend IP:PORT\` ×$BACKENDS, \`rcon service rm NAME\`: elements of
		  rcon's sets and maps (\`svc_all\`, the set of the service's
		  shared chain, \`svc_dst_I\`, \`svc_self\`), see docs/ARCHITECTURE.md.
		- **rcon-iptables**: the same with \`rcon --firewall-backend iptables\`:
		  a jump per service from \`RCON-SERVICES\` to a chain of
		  \`statistic\` DNAT rules; one \`iptables-restore --noflush\` per change.
		- **kube-iptables**: kube-proxy's iptables mode, written by this
		  script with \`iptables-restore\` (no kube-proxy binary is installed
		  here) and kept to kube-proxy's layout (pkg/proxy/iptables): PREROUTING
		  and OUTPUT jump to \`KUBE-SERVICES\`, which has one rule per service
		  (\`-d VIP -p tcp --dport 80\`) jumping to \`KUBE-SVC-X\`; that marks
		  traffic from outside the pod range for masquerade and picks an
		  endpoint with \`-m statistic --mode random --probability 1/(n−i)\`,
		  each to \`KUBE-SEP-Y\`: \`-s EP -j KUBE-MARK-MASQ\`, then \`-j DNAT\`;
		  \`KUBE-POSTROUTING\` masquerades packets marked 0x4000. The N services
		  are one \`iptables-restore --noflush\` (kube-proxy's first full sync);
		  a create or rm is another, writing \`KUBE-SERVICES\` whole and only the
		  changed service's chains, as kube-proxy's partial syncs do. Its
		  network plumbing (bridge, addresses, forwarding) is rcon's iptables
		  network, which holds no service.

		How: every (tool, N) starts from nothing: a fresh node network
		namespace in which the tool and the timing loops run, and one container
		namespace, the probed service's: its $BACKENDS backends are ports
		$PORT0–$((PORT0 + BACKENDS - 1)) of that container, where a listener that
		never accepts waits (the kernel completes the handshake). The other
		N−1 services (not timed; two \`service create\` loops at once for rcon)
		have backends at addresses of the network that no container holds. The
		probed service ($PROBE_VIP:80) comes last, so with iptables its jump is
		the last a new connection walks past. A client in an "internet"
		namespace behind the node's uplink then makes $BATCHES batches of
		$CONNECTS connects to the VIP (after $WARM untimed), timing \`connect()\`
		alone, with the fewest and with the most services: both worlds are
		built first and their batches alternate. Last, $CHANGES
		services are created one by one and removed one by one, each call timed
		(\`\$EPOCHREALTIME\` around the process). Raw times:
		\`hack/.cache/bench/services/\`.

		### Create and remove one service

	EOF
	change_table
	cat <<-EOF

		### Connect through a VIP

		A connection's first packet is matched against the services; the
		rest follow conntrack. With iptables it walks the \`KUBE-SERVICES\` (or
		\`RCON-SERVICES\`) jumps up to its own, then $BACKENDS \`statistic\` rules at
		most; with rcon's nftables layout it is three lookups: the VIP in a
		map, a slot by \`numgen\`, the slot's backend in a map. The fewest and
		the most services are different worlds made minutes apart: compare
		ratios; the batches alternate between the two worlds, so that a drift
		of the machine falls on both (each batch's median shows the spread).

	EOF
	connect_table
	cat <<-'EOF'

		### Context (not compared)

		Building the N services (all but the probe's: rcon by `service create`
		calls, kube-iptables by one restore), and the VIPs found in the
		firewall after it.

	EOF
	context_table
	notes=$(goal_lines)
	if [[ -n $notes ]]; then
		printf '\nNotes from this run:\n\n%s\n' "$notes"
	fi
} >"$section.new"
bench_section_out bench-services "$section"
