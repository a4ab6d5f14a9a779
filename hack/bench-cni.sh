#!/usr/bin/env bash
# ADD+DEL latency of rcon's CNI plugin (rcon-cni) against the reference
# `bridge` + `host-local` plugins (Debian's containernetworking-plugins), in
# one run, with 10 and with 1000 attachments already on the network. Each
# plugin is called as libcni calls it: CNI_* in the environment, the
# configuration on stdin. Writes a section of docs/PERFORMANCE.md.
#
#   hack/bench-cni.sh                 (make build first)
#   hack/bench-cni.sh --quick         10 and 50 attachments; writes only the
#                                     cache file unless BENCH_OUT is set
#   BENCH_CNI_COUNTS="10 1000"        attachments already there
#   BENCH_CNI_SAMPLES=40              timed ADD+DEL cycles per run
#   BENCH_OUT=/tmp/p.md               write the section somewhere else
#
# Every (plugin, count) run gets a world of its own: a node netns
# (rcon-bcni-PID-TOOL-N) where the plugin runs (under nsenter --net), N + 1
# container netns files under /tmp/rcon-bcni-PID, and private state dirs.
# The machine's root network namespace is never touched.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

CNI_DIR=${CNI_DIR:-/usr/lib/cni}
RCON_CNI=${RCON_CNI:-$repo/target/release/rcon-cni}
SUBNET=10.88.0.0/16

# --- inside a node: the timed loop -------------------------------------------
# `bench-cni.sh __inner TOOL N SAMPLES DIR` under nsenter --net=NODE.

conf() { # conf TOOL: the network configuration
	case $1 in
	ref) printf '{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"cni-bench","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"%s","dataDir":"%s"}}\n' "$SUBNET" "$DIR/ipam" ;;
	rcon) printf '{"cniVersion":"1.1.0","name":"bench","type":"rcon","subnet":"%s","dataRoot":"%s","runRoot":"%s"}\n' "$SUBNET" "$DIR/lib" "$DIR/run" ;;
	esac
}

call() { # call CMD CONTAINER: one plugin call, output discarded
	CNI_COMMAND=$1 CNI_CONTAINERID=bench$2 CNI_NETNS=$DIR/cns/c$2 "$PLUGIN" <"$DIR/conf.json" >"$DIR/out" 2>"$DIR/err" || {
		echo "bench-cni: $TOOL: $1 of container $2 failed:" >&2
		cat "$DIR/out" "$DIR/err" >&2
		exit 1
	}
}

inner() {
	TOOL=$1 N=$2 SAMPLES=$3 DIR=$4
	export CNI_PATH=$CNI_DIR CNI_IFNAME=eth0
	case $TOOL in ref) PLUGIN=$CNI_DIR/bridge ;; rcon) PLUGIN=$RCON_CNI ;; esac
	conf "$TOOL" >"$DIR/conf.json"
	local i t0 t1
	for ((i = 1; i <= N; i++)); do call ADD "$i"; done
	local -a us=()
	for ((i = 1; i <= SAMPLES; i++)); do
		t0=$EPOCHREALTIME
		call ADD $((N + 1))
		call DEL $((N + 1))
		t1=$EPOCHREALTIME
		us+=($((${t1//[.,]/} - ${t0//[.,]/})))
	done
	printf '%s\n' "${us[@]}" >"$DIR/cycle.us"
	# Not timed: the attachments are all there, and a packet passes.
	echo "veths=$(ip -o link show type veth | wc -l)" >"$DIR/info"
	if nsenter --net="$DIR/cns/c1" busybox ping -q -c1 -W2 10.88.0.1 >/dev/null 2>&1; then
		echo "ping=ok" >>"$DIR/info"
	else echo "ping=failed" >>"$DIR/info"; fi
	for ((i = 1; i <= N; i++)); do call DEL "$i"; done
}

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh"
bench_dispatch "$@"

# --- outside: worlds, runs, report -------------------------------------------

bench_start bench-cni "$@"
COUNTS=${BENCH_CNI_COUNTS:-$([[ -n $quick ]] && echo "10 50" || echo "10 1000")}
SAMPLES=${BENCH_CNI_SAMPLES:-40}
# shellcheck disable=SC2086 # one count a word
check_counts bench-cni BENCH_CNI_COUNTS 60000 ": one /16" $COUNTS
check_counts bench-cni BENCH_CNI_SAMPLES 10000 "" "$SAMPLES"
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/cni
BENCH_TAG=bench-cni
bench_need ip nsenter unshare nft iptables busybox
for f in "$CNI_DIR/bridge" "$CNI_DIR/host-local" "$RCON_CNI"; do
	[[ -x $f ]] || {
		echo "bench-cni: $f not found (make build; hack/install-deps.sh)" >&2
		exit 1
	}
done

PREFIX=rcon-bcni
WORLD=/tmp/$PREFIX-$$
NETNS_RUN=/var/run/netns
bench_world_up
cp "$RCON_CNI" "$WORLD/rcon-cni" # one binary for the whole run
RCON_CNI=$WORLD/rcon-cni
export RCON_CNI CNI_DIR

run_one() { # run_one TOOL N
	local tool=$1 n=$2 dir=$WORLD/$1-$2 node=$PREFIX-$$-$1-$2
	mkdir -p "$dir"
	ip netns add "$node"
	netns_baseline "$node"
	ip -n "$node" link set lo up
	make_containers "$dir/cns" $((n + 1))
	echo "bench-cni: $tool, $n attachment(s) there..."
	bench_inner "$node" "$tool" "$n" "$SAMPLES" "$dir" || {
		echo "bench-cni: $tool with $n attachments failed; no figures written" >&2
		exit 1
	}
	cp "$dir/cycle.us" "$RAW/$tool-$n.us"
	cp "$dir/info" "$RAW/$tool-$n.info"
	umount "$dir/cns"/c* 2>/dev/null || unmount_below "$dir/cns"
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	ip netns delete "$node"
}

bench_runs_begin
for n in $COUNTS; do
	for tool in ref rcon; do run_one "$tool" "$n"; done
done
bench_runs_end

# --- the report ---------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
cni_ver=$(dpkg-query -W -f='${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
rev=$(git -C "$repo" describe --always 2>/dev/null || echo unknown)
section=$CACHE/cni.md
{
	cat <<-EOF
		## CNI: rcon-cni against the reference bridge + host-local plugins

		Generated by [hack/bench-cni.sh](../hack/bench-cni.sh).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- CNI plugins $cni_ver (Debian); rcon $rev (release build)

		What is timed: one ADD then one DEL of a container, each plugin
		called as libcni calls it (\`bridge\` runs \`host-local\` in turn;
		\`rcon-cni\` is one process), $SAMPLES times, on a network
		that already holds 10 or 1000 attachments made the same way (not
		timed). The reference is \`bridge\` (isGateway, ipMasq: iptables) with
		\`host-local\` IPAM, which \`bridge\` runs itself, cniVersion 1.0.0; rcon
		is \`rcon-cni\` with its own IPAM on the nftables backend, cniVersion 1.1.0.
		Both make a veth into the container's netns, a bridge port, the
		address and default route, and the network's masquerade.

		| attachments | plugin | ADD+DEL median ms | p99 ms | rcon ÷ reference (medians) |
		|---:|---|---:|---:|---:|
	EOF
	for n in $COUNTS; do
		read -r rm rp < <(median_p99 "$RAW/ref-$n.us")
		read -r cm cp < <(median_p99 "$RAW/rcon-$n.us")
		printf '| %s | bridge + host-local | %s | %s | |\n' "$n" "$(fmt_ms "$rm")" "$(fmt_ms "$rp")"
		printf '| %s | rcon-cni | %s | %s | %s |\n' "$n" "$(fmt_ms "$cm")" "$(fmt_ms "$cp")" "$(ratio "$cm" "$rm")"
	done
	echo
	for n in $COUNTS; do
		for tool in ref rcon; do
			if ! grep -q '^ping=ok' "$RAW/$tool-$n.info"; then
				echo "- $tool with $n attachments: container 1 could not ping the gateway."
			fi
		done
	done
	echo "The goal (issue 21) is rcon at most 0.3× the reference. rcon-cni's time does not grow with the attachments (the reference's does: host-local and the bridge plugin's iptables work). The anti-spoofing element each ADD adds and each DEL removes (docs/SECURITY.md), as \`rcon network attach\`/\`detach\` do, is one nfnetlink message (issue 22; it was an \`nft\` run, then a libnftables call), and no command waits for the kernel to free what a DEL deleted (sys/linger.rs): ADD and DEL execute no program (runtime-tests/hotpath.rs)."
} >"$section.new"
bench_section_out bench-cni "$section"
