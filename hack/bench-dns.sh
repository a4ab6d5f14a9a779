#!/usr/bin/env bash
# Queries per second and latency of rcon's resolver (`rcon dns`) against
# aardvark-dns (Debian's 1.4, the resolver of Podman's netavark), serving the
# same names, measured with dnsperf (Debian) in one run. Writes the bench-dns
# section of docs/PERFORMANCE.md.
#
#   hack/bench-dns.sh                 (make build first)
#   hack/bench-dns.sh --quick         100 names, short runs; writes only the
#                                     cache file unless BENCH_OUT is set
#   BENCH_DNS_NAMES=1000              names each resolver serves
#   BENCH_DNS_SECONDS=10              length of the throughput run
#   BENCH_OUT=/tmp/p.md               write the section somewhere else
#
# Each resolver gets a node netns of its own (rcon-bdns-PID-TOOL) with a
# bridge whose address it listens on, and dnsperf runs there too. rcon's
# names are real attachments (`network attach --network-alias`, one netns
# file each under /tmp/rcon-bdns-PID); aardvark's come from the config file
# podman would write for the same containers. The machine's root network
# namespace is never touched.
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

RCON=${RCON:-$repo/target/release/rcon}
AARDVARK=${AARDVARK:-/usr/lib/podman/aardvark-dns}
SUBNET=10.89.0.0/16
GW=10.89.0.1
# The fixed rate of the latency run: well under either resolver's ceiling.
LAT_QPS=${BENCH_DNS_LAT_QPS:-5000}

# --- inside a node: serve the names, then time them ---------------------------
# `bench-dns.sh __inner TOOL N SECONDS DIR` under nsenter --net=NODE.

# addr I: the address of name I (10.89.0.2 …), as rcon's IPAM hands them out.
addr() { echo "10.89.$((($1 + 1) / 256)).$((($1 + 1) % 256))"; }

serve_rcon() {
	export RCON_ROOT=$DIR/run RCON_DATA_ROOT=$DIR/lib RCON_NETNS_DIR=$DIR/netns RCON_RESOLV_CONF=$DIR/resolv.conf
	: >"$DIR/resolv.conf" # no upstreams: nothing leaves the node
	"$RCON" network create --subnet "$SUBNET" bench >/dev/null
	make_containers "$DIR/cns" "$N"
	local i
	for ((i = 1; i <= N; i++)); do
		"$RCON" network attach --netns "$DIR/cns/c$i" --network-alias "c$i" bench >/dev/null
	done
}

serve_aardvark() {
	ip link add br0 type bridge
	ip addr add "$GW/16" dev br0
	ip link set br0 up
	mkdir -p "$DIR/aardvark"
	local i
	{
		echo "$GW"
		for ((i = 1; i <= N; i++)); do printf 'id%d %s  c%d\n' "$i" "$(addr "$i")" "$i"; done
	} >"$DIR/aardvark/bench"
	# It forks into the background itself, as podman expects.
	"$AARDVARK" --config "$DIR/aardvark" -p 53 run >"$DIR/aardvark.log" 2>&1 &
}

inner() {
	TOOL=$1 N=$2 DUR=$3 DIR=$4
	"serve_$TOOL"
	local i
	for ((i = 0; i < 50; i++)); do
		ss -lun | grep -q "$GW:53 " && break
		sleep 0.1
	done
	for ((i = 1; i <= N; i++)); do echo "c$i A"; done >"$DIR/queries"
	# Not timed: the last name answers with its address.
	echo "c$N A" >"$DIR/one"
	dnsperf -s "$GW" -d "$DIR/one" -n 1 -v 2>&1 | grep -q NOERROR && echo "check=ok" >"$DIR/info" || echo "check=failed" >"$DIR/info"
	dnsperf -s "$GW" -d "$DIR/queries" -l "$DUR" -c 4 -T 2 -q 256 >"$DIR/throughput" 2>&1
	# Latency at a fixed rate: every query's own figure (-v), for the percentiles.
	dnsperf -s "$GW" -d "$DIR/queries" -l 5 -Q "$LAT_QPS" -v >"$DIR/latency.raw" 2>&1
	awk '$1 == ">" && $2 == "NOERROR" {printf "%d\n", $NF * 1e6}' "$DIR/latency.raw" >"$DIR/latency.us"
}

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh"
bench_dispatch "$@"

# --- outside: worlds, runs, report -------------------------------------------

bench_start bench-dns "$@"
NAMES=${BENCH_DNS_NAMES:-$([[ -n $quick ]] && echo 100 || echo 1000)}
DUR=${BENCH_DNS_SECONDS:-$([[ -n $quick ]] && echo 3 || echo 10)}
check_counts bench-dns BENCH_DNS_NAMES 60000 ": one /16" "$NAMES"
check_counts bench-dns BENCH_DNS_SECONDS 600 "" "$DUR"
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/dns
BENCH_TAG=bench-dns
bench_need ip nsenter unshare nft dnsperf ss
[[ -x $AARDVARK ]] || {
	echo "bench-dns: $AARDVARK not found (hack/install-deps.sh --bench)" >&2
	exit 1
}

PREFIX=rcon-bdns
WORLD=/tmp/$PREFIX-$$
NETNS_RUN=/var/run/netns
world_stop_procs() { kill_world_procs "$1"; }
bench_world_up
bench_need_rcon dns
bench_pin_rcon

run_one() { # run_one TOOL
	local tool=$1 dir=$WORLD/run-$1 node=$PREFIX-$$-$1
	mkdir -p "$dir"
	ip netns add "$node"
	netns_baseline "$node"
	ip -n "$node" link set lo up
	echo "bench-dns: $tool, $NAMES names..."
	bench_inner "$node" "$tool" "$NAMES" "$DUR" "$dir" || {
		echo "bench-dns: $tool failed; no figures written" >&2
		exit 1
	}
	for f in throughput latency.us info; do cp "$dir/$f" "$RAW/$tool.$f"; done
	kill_world_procs $$
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	ip netns delete "$node"
}

bench_runs_begin
for tool in aardvark rcon; do run_one "$tool"; done
bench_runs_end

# --- the report ---------------------------------------------------------------
qps() { awk '/Queries per second:/ {print $4}' "$1"; }
avg_ms() { awk '/Average Latency/ {printf "%.3f", $4 * 1000}' "$1"; }
lost() { awk '/Queries lost:/ {print $3, $4}' "$1"; }
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
aard_ver=$(dpkg-query -W -f='${Version}' aardvark-dns 2>/dev/null || echo unknown)
perf_ver=$(dpkg-query -W -f='${Version}' dnsperf 2>/dev/null || echo unknown)
section=$CACHE/dns.md
{
	cat <<-EOF
		## DNS: rcon's resolver against aardvark-dns

		Generated by [hack/bench-dns.sh](../hack/bench-dns.sh).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- aardvark-dns $aard_ver, dnsperf $perf_ver (Debian); rcon $rcon_rev (release build of $rcon_built)

		Each resolver serves the same $NAMES names (c1 … c$NAMES, one A record
		each) on a bridge address in a netns of its own, where dnsperf runs too.
		rcon's names are real attachments (\`network attach --network-alias\`);
		aardvark's come from the config file podman writes, and it runs as
		podman runs it (\`aardvark-dns --config DIR -p 53 run\`). Throughput:
		dnsperf for ${DUR} s, 4 clients on 2 threads, up to 256 queries
		outstanding, every name in turn. Latency: dnsperf at a fixed $LAT_QPS
		queries per second for 5 s, each query's own time (\`-v\`).

		| resolver | queries/s | lost | average ms (full load) | median ms at $LAT_QPS q/s | p99 ms at $LAT_QPS q/s |
		|---|---:|---:|---:|---:|---:|
	EOF
	for tool in aardvark rcon; do
		read -r med p99 < <(median_p99 "$RAW/$tool.latency.us")
		printf '| %s | %s | %s | %s | %s | %s |\n' "$tool" "$(qps "$RAW/$tool.throughput")" "$(lost "$RAW/$tool.throughput")" \
			"$(avg_ms "$RAW/$tool.throughput")" "$(fmt_ms "$med")" "$(fmt_ms "$p99")"
	done
	echo
	a=$(qps "$RAW/aardvark.throughput")
	r=$(qps "$RAW/rcon.throughput")
	echo "rcon ÷ aardvark, queries per second: $(ratio "$r" "$a") (the goal, issue 21: at least 2×, and a p99 under 1 ms)."
	for tool in aardvark rcon; do
		slow=$(awk '$1 > 1000 {n++} END {printf "%.1f", 100 * n / (NR ? NR : 1)}' "$RAW/$tool.latency.us")
		echo "- $tool: $slow% of the queries of the latency run took over 1 ms."
	done
	echo "The load average above is the whole machine's: other work on its $(nproc) cores shows in the latency tail."
	for tool in aardvark rcon; do
		grep -q '^check=ok' "$RAW/$tool.info" || echo "- $tool: the check query (c$NAMES) got no NOERROR answer."
	done
} >"$section.new"
bench_section_out bench-dns "$section"
