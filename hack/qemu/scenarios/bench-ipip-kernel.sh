#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh), for hack/bench-cluster.sh:
# iperf3 throughput and ping latency over the underlay, node to node, and
# pod to pod over rcon's kernel ipip (`cluster init --backend ipip
# --ipip-mode kernel`), in Debian's stock kernel. Figures only: TCG emulates
# every instruction, so they mean something only as a ratio to this VM's own
# underlay.
#
# Needs iperf3 and its libraries in the image and /etc/bench-ipip-kernel.conf
# (RUNS, SECS, PINGS), both from RCON_QEMU_EXTRA (hack/bench-cluster.sh
# makes them). Two node namespaces on a veth underlay u0 (192.168.50.1/24,
# .2/24, MTU 1500), each with its own rcon (private dirs under /tmp/NODE) and
# one pod: a netns attached to the `cluster` network.
#
# Result lines: "bench-ipip-kernel: RESULT PATH KIND VALUE" with PATH
# underlay or ipip-kernel, KIND mbps (one iperf3 run, receiver Mbit/s) or
# ping_us (VALUE...: every round trip, in µs), or "ipip-kernel mtu" (the
# pod's MTU). busybox sh prefers its own applets: iproute2 is
# called by full path, nsenter and ping are busybox's.
set -u
SCENARIO=bench-ipip-kernel
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh
RUNS=3 SECS=5 PINGS=50
# shellcheck disable=SC1091 # only in the VM
[ ! -f /etc/bench-ipip-kernel.conf ] || . /etc/bench-ipip-kernel.conf

# measure PATH FROM_NS TO_NS IP: RUNS iperf3 runs and PINGS pings from the
# netns file FROM_NS to IP in TO_NS.
measure() {
	nsenter --net="$3" iperf3 -s -B "$4" >/tmp/iperf3-server.log 2>&1 &
	srv=$!
	i=0
	until nsenter --net="$3" netstat -tln | grep -q ":5201 "; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "$1: iperf3 -s did not listen: $(cat /tmp/iperf3-server.log)"
		sleep 0.1
	done
	r=1
	while [ $r -le "$RUNS" ]; do
		out=$(nsenter --net="$2" iperf3 -c "$4" -t "$SECS" -O 1 -f m 2>&1) || fail "$1: iperf3 -c $4: $out"
		mbps=$(echo "$out" | awk '/receiver/ {print $(NF-2)}')
		[ -n "$mbps" ] || fail "$1: no receiver line from iperf3: $out"
		echo "bench-ipip-kernel: RESULT $1 mbps $mbps"
		r=$((r + 1))
	done
	kill "$srv" 2>/dev/null
	wait "$srv" 2>/dev/null
	nsenter --net="$2" ping -c "$PINGS" -i 0.05 -W 2 "$4" >/tmp/ping.out 2>&1 || fail "$1: ping $4: $(tail -2 /tmp/ping.out)"
	# one line for all of them: run.sh shows only the console's last 200 lines
	sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' /tmp/ping.out |
		awk -v p="$1" 'BEGIN {printf "bench-ipip-kernel: RESULT %s ping_us", p} {printf " %d", $1 * 1000} END {print ""}'
}

step "rcon $(rcon --version 2>&1); $(iperf3 --version 2>&1 | head -1); runs $RUNS x $SECS s, $PINGS pings"
command -v iperf3 >/dev/null || fail "no iperf3 in the image (RCON_QEMU_EXTRA)"

underlay
node_up nodea kernel
node_up nodeb kernel
in_node nodea $IP -d link show rcon-ipip | grep -q 'ipip ' || fail "no kernel ipip device rcon-ipip on nodea"
b=$(pod_ip nodeb)
step "pods $(pod_ip nodea) -> $b, pod MTU $mtu"
echo "bench-ipip-kernel: RESULT ipip-kernel mtu $mtu"
in_pod nodea ping -c 2 -w 10 "$b" >/dev/null || fail "no ping between the pods"

measure underlay /var/run/netns/nodea /var/run/netns/nodeb 192.168.50.2
measure ipip-kernel /tmp/nodea/netns/pod /tmp/nodeb/netns/pod "$b"

teardown
step "ok"
