#!/usr/bin/env bash
# Throughput and latency of rcon's cross-host pod networks, pod to pod across
# two nodes, for each backend (host-gw, vxlan, vxlan-l2, eBPF ipip, userspace
# ipip batched and unbatched), each beside the underlay itself (node to node)
# measured in the same world, the runs taking turns; the kernel's VXLAN alone,
# made by hand between the nodes (vxlan-bare), for reference; when Debian's kernel can be
# booted under qemu, the kernel's ipip against that VM's own underlay
# (hack/qemu/scenarios/bench-ipip-kernel.sh); and the ceiling of userspace
# ipip's design on this machine: full-size IPIP packets sent and received
# with rcon ipipd's own socket code and nothing else (no TUN, no TCP), from
# one and from two threads (path ipip-wire: examples/ipip_wire.rs, built by
# `make build`). Writes a section of docs/PERFORMANCE.md. Figures only,
# never an assertion.
#
#   hack/bench-cluster.sh              (make bench installs deps and builds first)
#   hack/bench-cluster.sh --quick      one 3 s iperf3 run and 500 round trips
#                                      per path; writes only the cache file
#                                      unless BENCH_OUT is set
#   BENCH_CLUSTER_PATHS="host-gw vxlan vxlan-l2 vxlan-bare ipip-ebpf ipip-user ipip-user-b1 ipip-wire"
#   BENCH_CLUSTER_RUNS=3               iperf3 runs per path (median reported)
#   BENCH_CLUSTER_SECS=5               seconds per run (plus 1 s omitted)
#   BENCH_CLUSTER_RR=2000              TCP request/response round trips per path
#   BENCH_CLUSTER_QEMU=1               0: skip the kernel ipip run in the VM
#   BENCH_CLUSTER_RR_CPU=0             the CPU both ends of the round trips run on
#   BENCH_CLUSTER_SPLIT=1              0: no throughput runs with one CPU per
#                                      node (the default with two CPUs or more)
#   BENCH_OUT=/tmp/p.md                write the section somewhere else
#   RCON=PATH RCON_REV=REV             another rcon binary, and what to call it
#   IPIP_WIRE=PATH                     another ipip_wire probe binary
#
# Each path gets a world of its own: an underlay namespace holding a bridge
# (`ip netns add rcon-bclu-PID-PATH-u`), two node namespaces
# (rcon-bclu-PID-PATH-n1, -n2) each with a veth u0 on that bridge
# (192.168.77.1/24, .2/24, MTU 1500) and its own rcon (private RCON_ROOT,
# RCON_DATA_ROOT, RCON_NETNS_DIR under /tmp/rcon-bclu-PID), run with
# nsenter --net. Each node runs `rcon cluster init --backend B --underlay u0`
# and `rcon node add` of the other, then makes one pod: `rcon netns add p`
# and `rcon network attach --netns DIR/p cluster` (a container's data path:
# a veth into the cluster bridge). iperf3 and the round-trip client run in
# those namespaces. The world goes with `rcon cluster reset -f` (which stops
# the ipip daemon) and `ip netns delete`; the machine's root network
# namespace is never touched. All of it is removed at the end and on failure.
#
# Raw figures go to hack/.cache/bench/cluster/ (PATH-WHAT.gbps: one iperf3
# run a line; PATH-WHAT.us: one round trip a line), the section to
# hack/.cache/bench/cluster.md.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

RCON=${RCON:-$repo/target/release/rcon}
NETNS_RUN=/var/run/netns
CIDR=10.244.0.0/16
UL=192.168.77 # the underlay: node K is $UL.K/24
PORT=5201     # iperf3
RR_PORT=7777  # the round-trip server

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh"

bench_start bench-cluster "$@"
PATHS=${BENCH_CLUSTER_PATHS:-host-gw vxlan vxlan-l2 vxlan-bare ipip-ebpf ipip-user ipip-user-b1 ipip-wire}
RUNS=${BENCH_CLUSTER_RUNS:-$([[ -n $quick ]] && echo 1 || echo 3)}
SECS=${BENCH_CLUSTER_SECS:-$([[ -n $quick ]] && echo 3 || echo 5)}
RR=${BENCH_CLUSTER_RR:-$([[ -n $quick ]] && echo 500 || echo 2000)}
QEMU=${BENCH_CLUSTER_QEMU:-1}
RR_CPU=${BENCH_CLUSTER_RR_CPU:-0}
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/cluster
BENCH_TAG=bench-cluster

for v in "$RUNS" "$SECS" "$RR"; do
	if ! [[ $v =~ ^[1-9][0-9]*$ ]] || ((v > 100000)); then
		echo "bench-cluster: BENCH_CLUSTER_RUNS, _SECS and _RR take a number from 1 to 100000, not '$v'" >&2
		exit 2
	fi
done
if ! [[ $RR_CPU =~ ^[0-9]+$ ]]; then
	echo "bench-cluster: BENCH_CLUSTER_RR_CPU takes a CPU number, not '$RR_CPU'" >&2
	exit 2
fi
for p in $PATHS; do
	case $p in host-gw | vxlan | vxlan-l2 | vxlan-bare | ipip-ebpf | ipip-user | ipip-user-b1 | ipip-wire) ;; *)
		echo "bench-cluster: unknown path '$p' in BENCH_CLUSTER_PATHS (host-gw vxlan vxlan-l2 vxlan-bare ipip-ebpf ipip-user ipip-user-b1 ipip-wire)" >&2
		exit 2
		;;
	esac
done
bench_need ip nsenter iperf3 jq python3 taskset sysctl
bench_need_rcon cluster init
WIRE=${IPIP_WIRE:-$repo/target/release/examples/ipip_wire}
if [[ " $PATHS " == *" ipip-wire "* && ! -x $WIRE ]]; then
	echo "bench-cluster: no probe at $WIRE (cargo build --release --example ipip_wire; make build does it)" >&2
	exit 2
fi

# --- the bench world and its cleanup ------------------------------------------
# Names carry our pid (hack/lib/benchworld.sh).
PREFIX=rcon-bclu
WORLD=/tmp/$PREFIX-$$

# world_stop_procs PID: in each node run PID left, `cluster reset -f` (the
# ipip daemon and its supervisor go with it); then any process still in one
# of its netns (iperf3, the round-trip server).
world_stop_procs() {
	local w=/tmp/$PREFIX-$1 bin d node
	bin=$(world_rcon "$1")
	for d in "$w"/*/n[12]; do
		[[ -d $d/lib ]] || continue
		node=${d%/*} node=$NETNS_RUN/$PREFIX-$1-${node##*/}-${d##*/}
		[[ -e $node ]] || continue
		RCON_ROOT=$d/run RCON_DATA_ROOT=$d/lib RCON_NETNS_DIR=$d/netns \
			nsenter --net="$node" "$bin" cluster reset -f >/dev/null 2>&1 || true
	done
	kill_world_procs "$1"
}

bench_world_up
bench_pin_rcon

# The round-trip measurement (netperf's TCP_RR, one connection, 1 byte each
# way, TCP_NODELAY): `rr.py serve IP PORT` answers, `rr.py client IP PORT N`
# prints the µs of each of N round trips after 100 not counted.
cat >"$WORLD/rr.py" <<'EOF'
import socket, sys, time
mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(4)
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = c.recv(1)
            if not b:
                break
            c.sendall(b)
        c.close()
n = int(sys.argv[4])
c = socket.create_connection((ip, port), timeout=5)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
out, now = [], time.perf_counter_ns
for i in range(n + 100):
    t0 = now()
    c.sendall(b"x")
    if c.recv(1) != b"x":
        sys.exit("rr: short answer")
    if i >= 100:
        out.append((now() - t0) // 1000)
c.close()
sys.stdout.write("".join("%d\n" % v for v in out))
EOF

# listening NS PORT: wait (up to 5 s) until a TCP socket listens on PORT in
# the netns file NS.
listening() {
	local hex k
	hex=$(printf ':%04X ' "$2")
	for ((k = 0; k < 100; k++)); do
		nsenter --net="$1" cat /proc/net/tcp | awk -v p="$hex" 'index($2 " ", p) && $4 == "0A" {f = 1} END {exit !f}' && return 0
		sleep 0.05
	done
	echo "bench-cluster: nothing listens on port $2 in $1" >&2
	return 1
}

# serve KIND NS IP PORT: a server (iperf3 or rr) on IP:PORT in the netns
# file NS, in the background, listening when this returns; its pid is added
# to servers.
servers=()
serve() {
	if [[ $1 == iperf3 ]]; then
		nsenter --net="$2" iperf3 -s -B "$3" -p "$4" >>"$WORLD/iperf3-server.log" 2>&1 &
	else
		taskset -c "$RR_CPU" nsenter --net="$2" python3 "$WORLD/rr.py" serve "$3" "$4" &
	fi
	servers+=($!)
	listening "$2" "$4"
}
stop_servers() {
	local p
	for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done
	servers=()
}

# iperf NAME FROM IP [CPUS]: one iperf3 run (TCP, one stream, SECS s after
# 1 s omitted) from the netns file FROM to IP, the client on CPUS (default
# all); Gbit/s received to $RAW/NAME.gbps, the sender's retransmits to
# $RAW/NAME.retr.
iperf() {
	local j
	j=$(taskset -c "${4:-$ALL_CPUS}" nsenter --net="$2" iperf3 -c "$3" -p "$PORT" -t "$SECS" -O 1 -J) || {
		echo "bench-cluster: $1: iperf3 -c $3 failed: $(jq -r .error <<<"$j" 2>/dev/null)" >&2
		return 1
	}
	jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$j" >>"$RAW/$1.gbps"
	jq -r '.end.sum_sent.retransmits' <<<"$j" >>"$RAW/$1.retr"
}
# rr NAME FROM IP: RR round trips from the netns file FROM to IP, µs to
# $RAW/NAME.us.
rr() { taskset -c "$RR_CPU" nsenter --net="$2" python3 "$WORLD/rr.py" client "$3" "$RR_PORT" "$RR" >>"$RAW/$1.us"; }

# One CPU per node (SPLIT=1, with two CPUs or more): as two one-core hosts
# would, node 1's work runs on CPU 0 and node 2's on CPU 1. Each node's
# processes (iperf3, the ipip daemon) are pinned to its CPU, and the
# packets each node's u0 receives are steered to its CPU with RPS: a veth
# otherwise hands them on in the sender's softirq, so that node 1's CPU
# also ran node 2's whole input path.
ALL_CPUS=0-$(($(nproc) - 1))
SPLIT=${BENCH_CLUSTER_SPLIT:-$( (($(nproc) >= 2)) && echo 1 || echo 0)}
# split_cpus on|off N1 N2 [NS...]: one CPU per node for the netns files N1,
# N2 (nodes) and NS (their pods: N1's first, then N2's), or back to shared.
split_cpus() {
	local on=$1 k ns cpus mask
	shift
	for k in 1 2; do
		cpus=$((k - 1)) mask=$((1 << (k - 1)))
		[[ $on == on ]] || cpus=$ALL_CPUS mask=0
		# (ip netns exec mounts the node's own /sys.)
		ip netns exec "${!k##*/}" sh -c "echo $mask >/sys/class/net/u0/queues/rx-0/rps_cpus"
		for ns in "${!k}" "${@:k+2:1}"; do
			[[ -n $ns ]] || continue
			pids_in "$ns" | while read -r p; do taskset -a -p -c "$cpus" "$p" >/dev/null 2>&1 || true; done
		done
	done
}

# measure PATH N1 N2 P1 P2 IP2: the underlay (node N1 to $UL.2 in node N2)
# and the pods (P1 to IP2 in P2), netns files, their runs taking turns so
# that a slower minute of the machine hits both alike; with SPLIT, each run
# also once more with one CPU per node.
measure() {
	local path=$1 n1=$2 n2=$3 p1=$4 p2=$5 ip2=$6 r
	serve iperf3 "$n2" "$UL.2" "$PORT"
	serve iperf3 "$p2" "$ip2" "$PORT"
	for ((r = 1; r <= RUNS; r++)); do
		iperf "$path-underlay" "$n1" "$UL.2"
		iperf "$path-pods" "$p1" "$ip2"
		if ((SPLIT)); then
			split_cpus on "$n1" "$n2" "$p1" "$p2"
			iperf "$path-underlay-split" "$n1" "$UL.2" 0
			iperf "$path-pods-split" "$p1" "$ip2" 0
			split_cpus off "$n1" "$n2" "$p1" "$p2"
		fi
	done
	stop_servers
	serve rr "$n2" "$UL.2" "$RR_PORT"
	serve rr "$p2" "$ip2" "$RR_PORT"
	rr "$path-underlay" "$n1" "$UL.2"
	rr "$path-pods" "$p1" "$ip2"
	stop_servers
}

# measure_wire N1 N2: the underlay (node N1 to $UL.2 in node N2) and the
# raw-socket wire alone (ipip_wire: N1 sends full-size IPIP packets for SECS
# from 1, then 2 threads; N2 receives them as rcon ipipd does), taking turns;
# with SPLIT, once more with one CPU per node (one sending thread).
measure_wire() {
	local n1=$1 n2=$2 r t
	serve iperf3 "$n2" "$UL.2" "$PORT"
	for ((r = 1; r <= RUNS; r++)); do
		iperf ipip-wire-underlay "$n1" "$UL.2"
		for t in 1 2; do wire "ipip-wire-$t" "$n1" "$n2" "$t" "$ALL_CPUS" "$ALL_CPUS"; done
		if ((SPLIT)); then
			split_cpus on "$n1" "$n2"
			iperf ipip-wire-underlay-split "$n1" "$UL.2" 0
			wire ipip-wire-1-split "$n1" "$n2" 1 0 1
			split_cpus off "$n1" "$n2"
		fi
	done
	stop_servers
	serve rr "$n2" "$UL.2" "$RR_PORT"
	rr ipip-wire-underlay "$n1" "$UL.2"
	stop_servers
}
# wire NAME N1 N2 THREADS TX_CPUS RX_CPUS: one probe run; the TCP payload
# rate its packets would carry to $RAW/NAME.gbps.
wire() {
	local rx
	# The receiver times from its first packet to its last, so packets
	# sent before it listens change nothing.
	taskset -c "$6" nsenter --net="$3" "$WIRE" receive "$UL.2" "$UL.1" >"$WORLD/wire.out" &
	rx=$!
	sleep 0.2
	taskset -c "$5" nsenter --net="$2" "$WIRE" send "$UL.1" "$UL.2" "$SECS" "$4" >/dev/null
	wait "$rx"
	awk '{print $8}' "$WORLD/wire.out" >>"$RAW/$1.gbps"
}

# path_env PATH, path_args PATH: the environment of the path's `cluster
# init` (the ipip daemon inherits it) and its flags.
path_env() { [[ $1 != ipip-user-b1 ]] || echo RCON_IPIP_BATCH=1; }
path_args() {
	case $1 in
	host-gw | vxlan | vxlan-l2) echo "--backend $1" ;;
	ipip-ebpf) echo "--backend ipip --ipip-mode ebpf" ;;
	ipip-user | ipip-user-b1) echo "--backend ipip --ipip-mode userspace" ;;
	# Nodes as in the other worlds (their nftables too), with no daemon
	# taking the probe's packets.
	ipip-wire) echo "--backend host-gw" ;;
	esac
}
# bare_vxlan PEER: the flags of the hand-made VXLAN device of vxlan-bare,
# as rcon's vxlan backend sets its own (VNI 1, port 4789, no learning), with
# the peer as its static remote; the kernel sets the MTU to u0's minus 50.
BARE=10.99.0 # vxlan-bare: node K is $BARE.K/24 on the device
bare_vxlan() { echo "id 1 dstport 4789 nolearning remote $1 dev u0"; }
# world_how PATH: how PATH's world was made, for the context table.
world_how() {
	if [[ $1 == vxlan-bare ]]; then
		echo "\`ip link add vxt type vxlan $(bare_vxlan PEER)\`, no rcon"
	else
		echo "\`$(path_env "$1" | sed 's/.$/& /')$(path_args "$1")\`"
	fi
}

# run_path PATH: a fresh world, the underlay and the path measured, the world
# removed. Context to $RAW/PATH.info.
run_path() {
	local path=$1 dir=$WORLD/$1 ul=$PREFIX-$$-$1-u k other nd n p1 pod mtu ip1 ip2 args envs left
	mkdir -p "$dir"
	ip netns add "$ul"
	netns_baseline "$ul"
	ip -n "$ul" link set lo up
	# The underlay bridge stands for a switch: no host firewall on it.
	ip netns exec "$ul" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
		net.bridge.bridge-nf-call-arptables=0
	ip -n "$ul" link add ul type bridge
	ip -n "$ul" link set ul up
	read -ra args <<<"$(path_args "$path")"
	read -ra envs <<<"$(path_env "$path")"
	for k in 1 2; do
		n=$PREFIX-$$-$path-n$k nd=$dir/n$k
		mkdir -p "$nd/run" "$nd/lib" "$nd/netns"
		ip netns add "$n"
		netns_baseline "$n"
		ip -n "$n" link set lo up
		ip link add u0 netns "$n" mtu 1500 type veth peer name "p$k" netns "$ul" mtu 1500
		ip -n "$ul" link set "p$k" master ul up
		ip -n "$n" addr add "$UL.$k/24" dev u0
		ip -n "$n" link set u0 up
	done
	if [[ $path == vxlan-bare ]]; then
		# The kernel's VXLAN alone: a device in each node, by hand, and
		# iperf3 between the nodes' addresses on it.
		for k in 1 2; do
			n=$PREFIX-$$-$path-n$k
			read -ra args <<<"$(bare_vxlan "$UL.$((3 - k))")"
			ip -n "$n" link add vxt type vxlan "${args[@]}"
			ip -n "$n" addr add "$BARE.$k/24" dev vxt
			ip -n "$n" link set vxt up
		done
		p1=$NETNS_RUN/$PREFIX-$$-$path-n1 pod=$NETNS_RUN/$PREFIX-$$-$path-n2
		ip1=$BARE.1 ip2=$BARE.2 dev=vxt
	else
		for k in 1 2; do
			other=$((3 - k))
			rcon_node "$path" "$k" "${envs[@]}" "$RCON" cluster init --cidr "$CIDR" --node-subnet "10.244.$k.0/24" \
				"${args[@]}" --underlay u0 >>"$dir/init.log"
			rcon_node "$path" "$k" "$RCON" node add "n$other" --underlay-ip "$UL.$other" --subnet "10.244.$other.0/24" >/dev/null
			rcon_node "$path" "$k" "$RCON" netns add p >/dev/null
			rcon_node "$path" "$k" "$RCON" network attach --netns "$dir/n$k/netns/p" cluster >/dev/null
			nsenter --net="$dir/n$k/netns/p" ip link set lo up
		done
		p1=$dir/n1/netns/p pod=$dir/n2/netns/p dev=eth0
		ip2=$(nsenter --net="$pod" ip -o -4 addr show eth0 | awk '{sub(/\/.*/, "", $4); print $4}')
		ip1=$(nsenter --net="$p1" ip -o -4 addr show eth0 | awk '{sub(/\/.*/, "", $4); print $4}')
	fi
	mtu=$(nsenter --net="$pod" ip -o link show "$dev" | sed 's/.* mtu \([0-9]*\) .*/\1/')
	{
		echo "pod_mtu=$mtu"
		echo "pods=$ip1 -> $ip2"
	} >"$RAW/$path.info"
	nsenter --net="$p1" busybox ping -c1 -W5 "$ip2" >/dev/null || {
		echo "bench-cluster: $path: $ip1 on n1 cannot ping $ip2 on n2" >&2
		return 1
	}
	if [[ $path == ipip-wire ]]; then
		echo "bench-cluster: $path: underlay $UL.1 -> $UL.2, then the raw-socket wire alone"
		measure_wire "$NETNS_RUN/$PREFIX-$$-$path-n1" "$NETNS_RUN/$PREFIX-$$-$path-n2"
	else
		echo "bench-cluster: $path: underlay $UL.1 -> $UL.2, then pods $ip1 -> $ip2 (MTU $mtu)"
		measure "$path" "$NETNS_RUN/$PREFIX-$$-$path-n1" "$NETNS_RUN/$PREFIX-$$-$path-n2" "$p1" "$pod" "$ip2"
	fi
	# The world goes: pods, cluster (and daemon), nodes. What the nodes
	# still held after the reset is context.
	for k in 1 2; do
		if [[ $path == vxlan-bare ]]; then
			ip -n "$PREFIX-$$-$path-n$k" link del vxt
		else
			rcon_node "$path" "$k" "$RCON" netns delete p >/dev/null
			rcon_node "$path" "$k" "$RCON" cluster reset -f >/dev/null
		fi
		left=$(nsenter --net="$NETNS_RUN/$PREFIX-$$-$path-n$k" ip -o link | awk -F': ' '$2 != "lo" && $2 !~ /^u0@/ {print $2}' | paste -sd, -)
		echo "left_links_n$k=${left:-none}" >>"$RAW/$path.info"
		echo "left_procs_n$k=$(procs_in "$NETNS_RUN/$PREFIX-$$-$path-n$k")" >>"$RAW/$path.info"
	done
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	for k in 1 2; do ip netns delete "$PREFIX-$$-$path-n$k"; done
	ip netns delete "$ul"
}

# rcon_node PATH K [VAR=VALUE...] CMD...: CMD in node K of PATH's world with
# that node's rcon dirs.
rcon_node() {
	local path=$1 k=$2 d=$WORLD/$1/n$2
	shift 2
	nsenter --net="$NETNS_RUN/$PREFIX-$$-$path-n$k" env RCON_ROOT="$d/run" RCON_DATA_ROOT="$d/lib" \
		RCON_NETNS_DIR="$d/netns" "$@"
}

# procs_in NS: how many processes are in the netns file NS.
procs_in() { pids_in "$1" | wc -l; }
# pids_in NS: the processes in the netns file NS, one a line.
pids_in() {
	local ino p
	ino=$(nsenter --net="$1" readlink /proc/self/ns/net)
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/net" 2>/dev/null) != "$ino" ]] || echo "${p#/proc/}"
	done
}

# --- kernel ipip, in Debian's kernel under qemu --------------------------------
# qemu_run: hack/qemu/scenarios/bench-ipip-kernel.sh with iperf3 (and its
# libraries) and the run's settings in RCON_QEMU_EXTRA; its result lines go
# to $RAW/qemu-PATH.mbps and .us, the console to $RAW/qemu.log. Sets
# qemu_note when it could not run.
qemu_note=''
qemu_run() {
	local extra=$WORLD/qemu-extra lib rc=0
	if [[ $QEMU == 0 ]]; then
		qemu_note="skipped (BENCH_CLUSTER_QEMU=0)"
		return
	elif ! command -v qemu-system-x86_64 >/dev/null; then
		qemu_note="skipped: no qemu-system-x86_64 (hack/qemu/fetch.sh installs it)"
		return
	fi
	mkdir -p "$extra/usr/bin" "$extra/etc"
	cp "$(command -v iperf3)" "$extra/usr/bin/iperf3"
	for lib in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
		[[ -e $extra$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$extra$lib"
	done
	printf 'RUNS=%s\nSECS=%s\nPINGS=%s\n' "$RUNS" "$SECS" "$([[ -n $quick ]] && echo 20 || echo 100)" >"$extra/etc/bench-ipip-kernel.conf"
	# The image cache is keyed by these files' times too: fixed ones keep it.
	find "$extra" -exec touch -h -d @946684800 {} +
	echo "bench-cluster: kernel ipip in Debian's kernel under qemu (TCG)"
	RCON_QEMU_EXTRA=$extra RCON_QEMU_TIMEOUT=$((120 + 4 * RUNS * (SECS + 2))) \
		"$repo/hack/qemu/run.sh" "$repo/hack/qemu/scenarios/bench-ipip-kernel.sh" >"$RAW/qemu.log" 2>&1 || rc=$?
	awk '$1 == "bench-ipip-kernel:" && $2 == "RESULT" {
			f = $4 == "mbps" ? ".mbps" : $4 == "ping_us" ? ".us" : ".info"
			for (i = 5; i <= NF; i++) print $i >> (raw "/qemu-" $3 f)
		}' raw="$RAW" "$RAW/qemu.log"
	if ((rc != 0)); then
		qemu_note="failed (hack/qemu/run.sh exit status $rc): $(grep -m1 -E 'FAIL|qemu/run:' "$RAW/qemu.log" | cut -c1-200)"
		echo "bench-cluster: kernel ipip in qemu $qemu_note" >&2
	fi
}

# --- the runs --------------------------------------------------------------------
bench_runs_begin
rm -f "$RAW"/*.gbps "$RAW"/*.retr "$RAW"/*.us "$RAW"/*.mbps "$RAW"/*.info "$RAW"/qemu.log
mkdir -p "$RAW"
for p in $PATHS; do
	run_path "$p" || {
		echo "bench-cluster: $p failed; no figures written" >&2
		exit 1
	}
done
qemu_run
bench_runs_end

# --- the report -------------------------------------------------------------------
# med FILE: the median of FILE's numbers ('' without the file); p99 FILE.
med() { if [[ -s $1 ]]; then median_p "$1" 50 | cut -d' ' -f1; fi; }
p99() { if [[ -s $1 ]]; then median_p "$1" 99 | cut -d' ' -f2; fi; }
gb() { awk -v v="${1:-}" 'BEGIN {if (v == "") print "—"; else printf "%.2f", v}'; }
us() { awk -v v="${1:-}" 'BEGIN {if (v == "") print "—"; else printf "%.0f", v}'; }
info() { sed -n "s/^$2=//p" "$RAW/$1.info" 2>/dev/null; }
# x A B: A ÷ B as a bare number, for verdicts
x() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {if (a == "" || b == "" || b == 0) print ""; else printf "%.2f", a / b}'; }

label() {
	case $1 in
	host-gw) echo 'host-gw' ;;
	vxlan) echo 'vxlan' ;;
	vxlan-l2) echo 'vxlan-l2' ;;
	vxlan-bare) echo "the kernel's VXLAN alone, by hand, node to node (no pods, no rcon)" ;;
	ipip-ebpf) echo 'ipip, eBPF (tc programs, `--ipip-mode ebpf`)' ;;
	ipip-user) echo 'ipip, userspace (batched)' ;;
	ipip-user-b1) echo 'ipip, userspace unbatched (`RCON_IPIP_BATCH=1`, flannel-UDP style)' ;;
	ipip-wire-1) echo "ipip's raw-socket wire alone (no TUN, no TCP), 1 sending thread" ;;
	ipip-wire-2) echo "ipip's raw-socket wire alone (no TUN, no TCP), 2 sending threads" ;;
	esac
}

all_underlay=$WORLD/underlay-all
for p in $PATHS; do cat "$RAW/$p-underlay.gbps"; done >"$all_underlay.gbps"
for p in $PATHS; do cat "$RAW/$p-underlay.us"; done >"$all_underlay.us"
for p in $PATHS; do cat "$RAW/$p-underlay-split.gbps" 2>/dev/null || true; done >"$all_underlay-split.gbps"

main_table() {
	echo "| path | Gbit/s (median) | ÷ underlay | one CPU per node: Gbit/s | ÷ underlay | RR median µs | RR p99 µs | median ÷ underlay | p99 ÷ underlay |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	printf '| underlay, node to node (all %s worlds) | %s | 1.00× | %s | 1.00× | %s | %s | 1.00× | 1.00× |\n' \
		"$(wc -w <<<"$PATHS")" "$(gb "$(med "$all_underlay.gbps")")" "$(gb "$(med "$all_underlay-split.gbps")")" \
		"$(us "$(med "$all_underlay.us")")" "$(us "$(p99 "$all_underlay.us")")"
	local p u d t
	# gbps_cells FILE UNDERLAY: a path's median and its ratio, shared
	# CPUs then one CPU per node (FILE-split).
	gbps_cells() {
		printf '%s | %s | %s | %s' "$(gb "$(med "$1.gbps")")" "$(ratio "$(med "$1.gbps")" "$(med "$2.gbps")")" \
			"$(gb "$(med "$1-split.gbps")")" "$(ratio "$(med "$1-split.gbps")" "$(med "$2-split.gbps")")"
	}
	for p in $PATHS; do
		u=$RAW/$p-underlay d=$RAW/$p-pods
		if [[ $p == ipip-wire ]]; then
			for t in 1 2; do
				printf '| %s | %s | — | — | — | — |\n' "$(label "$p-$t")" "$(gbps_cells "$RAW/$p-$t" "$u")"
			done
			continue
		fi
		printf '| %s | %s | %s | %s | %s | %s |\n' "$(label "$p")" "$(gbps_cells "$d" "$u")" \
			"$(us "$(med "$d.us")")" "$(us "$(p99 "$d.us")")" \
			"$(ratio "$(med "$d.us")" "$(med "$u.us")")" "$(ratio "$(p99 "$d.us")" "$(p99 "$u.us")")"
	done
}

context_table() {
	echo "| world | made with | pod MTU | underlay Gbit/s (runs) | pods Gbit/s (runs) | pods' retransmits | one CPU per node: underlay / pods Gbit/s (runs) | underlay RR median / p99 µs | left after \`cluster reset -f\`: links n1 / n2, processes n1 / n2 |"
	echo "|---|---|---:|---|---|---|---|---:|---|"
	local p
	runs() { awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $1}' "$1" 2>/dev/null; }
	for p in $PATHS; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s, %s / %s |\n' "$p" "$(world_how "$p")" \
			"$(if [[ $p == ipip-wire ]]; then echo '— (1500-byte packets)'; else info "$p" pod_mtu; fi)" \
			"$(runs "$RAW/$p-underlay.gbps")" \
			"$(if [[ $p == ipip-wire ]]; then echo "1 thread: $(runs "$RAW/$p-1.gbps"); 2 threads: $(runs "$RAW/$p-2.gbps")"; else runs "$RAW/$p-pods.gbps"; fi)" \
			"$(if [[ $p == ipip-wire ]]; then echo —; else paste -sd, "$RAW/$p-pods.retr" | sed 's/,/, /g'; fi)" \
			"$(if ((SPLIT)); then echo "$(runs "$RAW/$p-underlay-split.gbps") / $(runs "$RAW/$p-$([[ $p == ipip-wire ]] && echo 1 || echo pods)-split.gbps")"; else echo —; fi)" \
			"$(us "$(med "$RAW/$p-underlay.us")")" "$(us "$(p99 "$RAW/$p-underlay.us")")" \
			"$(info "$p" left_links_n1)" "$(info "$p" left_links_n2)" "$(info "$p" left_procs_n1)" "$(info "$p" left_procs_n2)"
	done
}

qemu_table() {
	local u=$RAW/qemu-underlay k=$RAW/qemu-ipip-kernel
	echo "| path, in the VM | Mbit/s (median) | ÷ the VM's underlay | ping median µs | ping p99 µs | median ÷ the VM's underlay |"
	echo "|---|---:|---:|---:|---:|---:|"
	printf '| underlay, node to node | %s | 1.00× | %s | %s | 1.00× |\n' "$(us "$(med "$u.mbps")")" "$(us "$(med "$u.us")")" "$(us "$(p99 "$u.us")")"
	printf '| ipip, kernel (`--ipip-mode kernel`, pod MTU %s) | %s | %s | %s | %s | %s |\n' "$(cat "$k.info" 2>/dev/null || echo '?')" \
		"$(us "$(med "$k.mbps")")" "$(ratio "$(med "$k.mbps")" "$(med "$u.mbps")")" \
		"$(us "$(med "$k.us")")" "$(us "$(p99 "$k.us")")" "$(ratio "$(med "$k.us")" "$(med "$u.us")")"
}

# verdicts: the goals, as this run saw them.
has() { [[ " $PATHS " == *" $1 "* ]]; }
verdicts() {
	local p r v u w b1 m
	# within PATH EXT WHAT CMP SUFFIX MODEL: PATH's pods within 10% of its
	# underlay, in the runs of SUFFIX ('' or -split), called MODEL.
	within() {
		r=$(x "$(med "$RAW/$1-pods$5.$2")" "$(med "$RAW/$1-underlay$5.$2")")
		[[ -n $r ]] || return 0
		v=$(awk -v r="$r" -v c="$4" 'BEGIN {print ((c == "ge" ? r >= 0.9 : r <= 1.1) ? "met" : "not met")}')
		echo "- $1 within 10% of the underlay's $3$6: **$v** (${r}×)."
	}
	# rel NAME UNDERLAY: NAME's throughput ÷ that of the underlay files UNDERLAY.
	rel() { x "$(med "$RAW/$1.gbps")" "$(med "$RAW/$2.gbps")"; }
	# against_vxlan PATH GOAL TEXT: PATH's share of its underlay against
	# vxlan's share of its own, with CPUs shared and one CPU per node. Each
	# path against its own world's underlay, so that a slower minute of the
	# machine in one world does not tilt the comparison.
	against_vxlan() {
		for m in '' -split; do
			u=$(rel "$1-pods$m" "$1-underlay$m") w=$(rel "vxlan-pods$m" "vxlan-underlay$m")
			r=$(x "$u" "$w")
			[[ -n $r ]] || continue
			v=$(awk -v r="$r" -v g="$2" 'BEGIN {print (r >= g ? "met" : "not met")}')
			echo "- $3$([[ -z $m ]] && echo ', CPUs shared' || echo ', one CPU per node'): **$v** (${r}× of vxlan: ${u}× of its underlay against vxlan's ${w}×)."
		done
	}
	for m in '' -split; do
		for p in host-gw vxlan; do
			if has "$p"; then within "$p" gbps throughput ge "$m" "$([[ -z $m ]] && echo ', CPUs shared' || echo ', one CPU per node')"; fi
		done
	done
	for p in host-gw vxlan; do
		if has "$p"; then within "$p" us "round-trip time (median)" le '' ''; fi
	done
	if has vxlan-bare; then
		echo "- for reference, the kernel's VXLAN alone, by hand between the two nodes with no pod path: $(rel vxlan-bare-pods vxlan-bare-underlay)× of its underlay's throughput with CPUs shared, $(rel vxlan-bare-pods-split vxlan-bare-underlay-split)× with one CPU per node; $(x "$(med "$RAW/vxlan-bare-pods.us")" "$(med "$RAW/vxlan-bare-underlay.us")")× of its round-trip time."
	fi
	if has ipip-ebpf && has vxlan; then
		against_vxlan ipip-ebpf 0.9 "eBPF ipip at least 0.9× kernel VXLAN's throughput"
	fi
	if has ipip-user && has vxlan; then
		against_vxlan ipip-user 0.5 "userspace ipip at least half of kernel VXLAN's throughput"
		if has ipip-user-b1; then
			u=$(med "$RAW/ipip-user-pods.gbps") b1=$(med "$RAW/ipip-user-b1-pods.gbps")
			r=$(x "$u" "$b1")
			v=$(awk -v r="$r" 'BEGIN {print (r > 1 ? "beaten" : "not beaten")}')
			echo "- the flannel-UDP-style peer (the same daemon unbatched): **$v** (batched ÷ unbatched ${r}×; unbatched is $(x "$b1" "$(med "$RAW/vxlan-pods.gbps")")× of vxlan)."
		fi
	fi
	if has ipip-wire && has vxlan; then
		w=$(rel ipip-wire-2 ipip-wire-underlay) v=$(rel vxlan-pods vxlan-underlay)
		echo "- the ceiling of userspace ipip's design here: the raw-socket wire alone, no TUN, no TCP, with both CPUs sending and nothing else running, carries $(x "$w" "$v")× of what vxlan's pods do (${w}× of its underlay against vxlan's ${v}×)$(
			w=$(rel ipip-wire-1-split ipip-wire-underlay-split) v=$(rel vxlan-pods-split vxlan-underlay-split)
			[[ -z $w || -z $v ]] || echo "; with one CPU per node, one sending thread, $(x "$w" "$v")×")."
	fi
}

seen_notes() {
	local p k
	for p in $PATHS; do
		for k in 1 2; do
			[[ $(info "$p" "left_links_n$k") == none ]] || echo "- $p: \`cluster reset -f\` left links on n$k: $(info "$p" "left_links_n$k")."
			[[ $(info "$p" "left_procs_n$k") == 0 ]] || echo "- $p: $(info "$p" "left_procs_n$k") processes still in n$k after \`cluster reset -f\`."
		done
	done
	[[ -z $qemu_note ]] || echo "- kernel ipip in the VM: $qemu_note."
	if awk -v l="${load_before%% *}" 'BEGIN {exit !(l >= 1)}'; then
		echo "- The machine was not idle (load average ${load_before%% *} before the run): other work shared its cores, and the round-trip figures, the most sensitive to that, can swing several-fold between runs (the RR p99s above); rerun on a quiet machine before reading much into a single latency ratio."
	fi
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
kver=$(cat "$repo/hack/.cache/qemu/kernel/.kver" 2>/dev/null || echo '?')
section=$CACHE/cluster.md
{
	cat <<-EOF
		## Cross-host pod networks: host-gw, vxlan, ipip

		Generated by [hack/bench-cluster.sh](../hack/bench-cluster.sh) (run by \`make bench\`).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- rcon $rcon_rev (release build of $rcon_built); $(iperf3 --version | head -1) (Debian); $(python3 --version)

		What is measured: pod to pod across two nodes, for each of rcon's
		cluster backends, and the underlay itself, node to node, as the
		reference.

		- **throughput**: \`iperf3 -c IP -t $SECS -O 1 -J\` (TCP, one stream,
		  the first second not counted), $RUNS run(s); the median of the
		  receiver's rate.
		- **latency (RR)**: one TCP connection (\`TCP_NODELAY\`), 1 byte
		  each way, $RR round trips after 100 not counted, each timed by
		  the client (a small python3 client and echo server, so each
		  includes about the same interpreter overhead on every path);
		  median and p99 (nearest rank).

		How: each path gets a fresh world: two node namespaces, each with a
		veth \`u0\` on a bridge in an underlay namespace (192.168.77.1/24 and
		.2/24, MTU 1500), each with its own rcon (private state dirs),
		called with \`nsenter --net=NODE\`. On each node:

		    rcon cluster init --cidr 10.244.0.0/16 --node-subnet 10.244.K.0/24 --backend B --underlay u0
		    rcon node add nJ --underlay-ip 192.168.77.J --subnet 10.244.J.0/24
		    rcon netns add p
		    rcon network attach --netns DIR/p cluster

		The pod is the data path of a container on the \`cluster\` network (a
		veth into the cluster bridge); iperf3 and the RR client run in it with
		\`nsenter --net\`. In each world the underlay (node 1 → 192.168.77.2 in
		node 2) and the pods (node 1's pod → node 2's pod) take turns, run
		by run, and each path's ratio is to the underlay of its own world.
		Then \`rcon cluster reset -f\` (which also stops the ipip daemon) and
		the namespaces go. Raw figures: \`hack/.cache/bench/cluster/\`.

		Two choices keep the world fair to every path. The underlay bridge
		stands for a switch, so the host firewall is not called on it
		(\`bridge-nf-call-iptables=0\` and the like in the underlay
		namespace); with it on, every frame on the wire went through
		br_netfilter's hooks, which no switch charges. And both ends of the round trips run
		on CPU $RR_CPU (\`taskset\`, as netperf's \`-T\`): in this VM a
		wake-up sent to an idle vCPU costs tens of µs, and whether the client
		and server happened to share a CPU decided the latency more than
		the path did.

		Throughput is measured twice in each run, in two models of two
		hosts on this VM's two CPUs:

		- **CPUs shared**: the scheduler places everything. A veth hands
		  a packet to its peer in the sender's softirq, so the sending CPU
		  runs node 1's output path and also node 2's whole input path up
		  to the receiving socket, which on real machines would be
		  another host's work, while the receiver's CPU waits on the
		  socket lock.
		- **one CPU per node**: as two one-core hosts. Node 1's processes
		  (iperf3's client, node 1's ipip daemon) are pinned to CPU 0 and
		  node 2's (iperf3's server, its daemon) to CPU 1 (\`taskset\`),
		  and what each node's \`u0\` receives is steered to its own CPU
		  (RPS, \`rps_cpus\` on \`u0\`), as a NIC's interrupt would
		  bring it there. Each side then has one core for all of its work;
		  absolute rates are lower, and no packet of one node is processed
		  on the other's CPU.

		### This machine's kernel

	EOF
	main_table
	cat <<-'EOF'

		Per world (context):

	EOF
	context_table
	cat <<-EOF

		### Kernel ipip, in Debian's kernel under qemu (apart)

		This machine's kernel has no ipip link type, so \`--backend ipip\` runs
		rcon's userspace data plane here. The kernel's ipip runs in
		[hack/qemu/scenarios/bench-ipip-kernel.sh](../hack/qemu/scenarios/bench-ipip-kernel.sh):
		Debian's kernel $kver booted by \`hack/qemu/run.sh\` under TCG (every
		instruction emulated, one vCPU), iperf3 and its libraries added with
		\`RCON_QEMU_EXTRA\`; the same two nodes on a veth underlay, \`rcon
		cluster init --backend ipip --ipip-mode kernel\`, one pod per node;
		the same iperf3 runs (\`-f m\`, receiver Mbit/s) and, for latency,
		busybox \`ping -i 0.05\` (no python3 in the image). The absolute
		figures are the emulator's: read only the ratios to the VM's own
		underlay, and do not set them beside the table above.

	EOF
	if [[ -s $RAW/qemu-ipip-kernel.mbps ]]; then qemu_table; else echo "_Not measured in this run: ${qemu_note:-no result lines}._"; fi
	cat <<-'EOF'

		### Reading the figures

		The goals, as this run saw them:

	EOF
	verdicts
	cat <<-EOF

		What the figures say (the commit measured is rcon $rcon_rev, above):

		- The pods' path is not the underlay's: on each node a packet also
		  crosses the pod's veth, the cluster bridge, a routing step and
		  rcon's nftables chains with conntrack. host-gw adds nothing else;
		  vxlan and vxlan-l2 add the VXLAN header (with GSO and GRO the
		  kernel handles it per 64 KB, not per packet) and a 50-byte
		  smaller MTU. With CPUs shared, all of it lands on one CPU: a veth
		  hands each packet on in the sender's softirq, so the sending CPU
		  runs node 1's output path, the underlay bridge and node 2's input
		  path up to the receiving socket, while the receiver's CPU waits
		  on the socket lock. A profile (\`perf record -a\`) of a vxlan
		  run finds both vCPUs about a fifth idle, an eighth of all samples
		  spinning in \`lock_sock\` and the VXLAN code itself under a
		  tenth. So each hop a path adds costs the one stream directly,
		  and where the work happens to run moves a run by a third: with
		  node 2's input steered by flow hash to either CPU (RPS), the same
		  vxlan pods moved between 5.2 and 9.4 Gbit/s from one run to the
		  next, over an underlay of about 9. The one-CPU-per-node columns take that away, as two
		  hosts would: each node's work stays on its own CPU, and what a
		  path costs is what its own node's CPU spends on it. The
		  \`vxlan-bare\` row is the kernel's VXLAN with nothing of rcon:
		  the best a pod path over VXLAN could do here.
		- Latency: the extra hops (two veths, two bridges and two routing
		  steps more each way) add a few µs to a round trip whose base here
		  is little more than that, so the ratio stays near 1.5×. With a
		  real wire under the nodes, its own latency would be in both
		  figures. Userspace ipip adds four thread wake-ups to each round
		  trip (the daemons' reader and writer on both nodes), and in this
		  VM each wake-up of a sleeping thread costs tens of µs. Spinning a
		  while before sleeping was tried and did not help.
		- Userspace ipip is a small fraction of vxlan in both
		  models (the verdicts above give this run's share), short of the half the goal asks (hack/bench-ipip.sh, one
		  stream between two bare namespaces, agrees). Its TUN device has the kernel's
		  offloads on: one read takes up to 64 KB of TCP, which rcon ipipd
		  cuts into 1480-byte segments and sends with one \`sendmmsg\`, and
		  the receiving side merges a batch's in-order segments into one
		  write. That puts it well ahead of the unbatched, flannel-UDP-like
		  mode (one read, one send per packet, no offloads). What is left is
		  per packet on the wire. A veth underlay carries the kernel
		  tunnels' 64 KB GSO packets whole, so vxlan is never cut into
		  frames here, while a raw socket cannot send GSO packets, so
		  userspace ipip puts 45 frames on the wire for each 64 KB. A
		  profile (\`perf record -a\`) shows the daemon's sending thread at
		  a full core: its \`sendmmsg\` runs, in softirq, each frame's whole
		  way through node 1's output path, the underlay bridge and node 2's
		  input path up to node 2's raw socket, which on real machines
		  would be two hosts' work. Both vCPUs are busy (about 94%), so
		  what limits it is the CPU each byte costs: \`sendmmsg\` is
		  nearly half of all samples, node 2's input path about a quarter,
		  node 1's output path about a tenth (its route lookup makes a
		  route entry per packet, as the kernel does for every
		  header-including raw socket, and its netfilter hooks). An
		  AF_PACKET send path would save only that tenth, and would take
		  the outer packets past the node's firewall; not built. rcon ipipd
		  sends on an \`IPPROTO_RAW\` socket apart from its receiving one
		  (an A/B run of the two builds, alternating: +4%, within this
		  table's run-to-run spread). Tried and dropped, each within the
		  noise: GRO on the nodes' underlay veths, also with threaded NAPI
		  (each frame arrives in a NAPI poll of its own, so nothing merges;
		  on a real NIC GRO does merge IPIP, and rcon ipipd takes such
		  merged packets whole), and \`notrack\` for protocol 4.
		- The two \`ipip-wire\` rows are not a path but the ceiling of the
		  design the issue asks for, a TUN device plus a raw socket:
		  [examples/ipip_wire.rs](../examples/ipip_wire.rs) sends full-size
		  IPIP packets with rcon ipipd's own sending code (one \`sendmmsg\`
		  per 45, as one super-packet makes) to a receiver that reads and
		  checks them as ipipd does, with no TUN, no TCP and no iperf3 on
		  either side; the rate is the TCP payload those packets would
		  carry (1428 bytes each). One sending thread is what ipipd has per
		  TUN queue, two keep both cores sending. The kernel gives raw
		  sockets no segmentation offload, so each frame pays the whole
		  output and input path, while a kernel tunnel's 64 KB GSO packets
		  cross the veth underlay whole. Whatever ipipd does, its pods also
		  need the TUN reads and writes, both TCP stacks and iperf3 on the
		  same two cores, so they stay well under these rows. These rows
		  are the most any TUN + raw-socket data plane could carry here;
		  where they are themselves under half of vxlan (the last verdict
		  above), the goal cannot be reached on this machine by this
		  design, however the daemon is written. Many flows do spread:
		  ipipd reads its TUN through two queues, each with a sending
		  thread of its own, and on a real NIC its receiving side gets
		  GRO's merged IPIP packets; one stream stays bound to one sending
		  thread.
		- Kernel ipip (in the VM) is not comparable with anything in the
		  first table: TCG makes per-packet work far dearer than on real
		  hardware, which weighs on an encapsulating path more than on the
		  plain underlay.
	EOF
	notes=$(seen_notes)
	if [[ -n $notes ]]; then
		echo
		echo "Notes from this run:"
		echo
		printf '%s\n' "$notes"
	fi
} >"$section.new"
bench_section_out bench-cluster "$section"
