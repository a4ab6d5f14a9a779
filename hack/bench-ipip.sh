#!/usr/bin/env bash
# Userspace IPIP against its peers, same topology, same run: two node
# namespaces on a veth underlay (MTU 1500), one iperf3 TCP stream between
# them, over
#   plain     the underlay itself
#   vxlan     the kernel's VXLAN (flannel-style: nolearning, static fdb/neigh, MTU 1450)
#   ipip      rcon ipipd (TUN MTU 1480), batched (recvmmsg/sendmmsg, 64),
#             with TUN offloads: TSO super-packets cut in userspace, segments
#             coalesced into GSO writes to the TUN
#   ipip-nooff  the same with RCON_IPIP_OFFLOAD=0: batched, packet by packet
#   ipip-b1   rcon ipipd with RCON_IPIP_BATCH=1: one read and one send per
#             packet, the design of flannel's UDP backend
# Figures only, never an assertion. Needs root, iproute2, iperf3.
#
#   hack/bench-ipip.sh [path/to/rcon] [seconds]
set -euo pipefail

RCON=${1:-target/release/rcon}
SECS=${2:-5}
RCON=$(realpath "$RCON")
P=bip$$ # scratch names: not "rt…" (those are runtime-tests')
A=${P}a B=${P}b
dir=$(mktemp -d)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

inns() { nsenter --net="/var/run/netns/$1" "${@:2}"; }

# Each namespace starts from the sysctl baseline (hack/lib/netns-baseline.conf).
NETNS_BASELINE_CONF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/netns-baseline.conf
# shellcheck source=SCRIPTDIR/lib/netns-baseline.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/netns-baseline.sh"
for n in "$A" "$B"; do ip netns add "$n" && netns_baseline "$n" && ip -n "$n" link set lo up; done
ip link add u0 netns "$A" type veth peer name u0 netns "$B"
ip -n "$A" addr add 192.168.77.1/24 dev u0 && ip -n "$A" link set u0 up
ip -n "$B" addr add 192.168.77.2/24 dev u0 && ip -n "$B" link set u0 up

# node: ns, underlay, own subnet index, peer ns's underlay, peer index
setup_node() {
	local ns=$1 me=$2 i=$3 peer=$4 j=$5
	# kernel VXLAN on 10.245.0.0/16
	ip -n "$ns" link add vx0 type vxlan id 1 dstport 4789 local "$me" dev u0 nolearning
	ip -n "$ns" link set vx0 address "02:00:00:00:00:0$i" mtu 1450 up
	ip -n "$ns" addr add "10.245.$i.0/32" dev vx0
	ip -n "$ns" neigh add "10.245.$j.0" lladdr "02:00:00:00:00:0$j" dev vx0 nud permanent
	bridge -n "$ns" fdb add "02:00:00:00:00:0$j" dev vx0 dst "$peer"
	ip -n "$ns" route add "10.245.$j.0/24" via "10.245.$j.0" dev vx0 onlink
	# userspace IPIP on 10.244.0.0/16
	ip -n "$ns" tuntap add dev ipip0 mode tun multi_queue
	ip -n "$ns" link set ipip0 mtu 1480 up
	ip -n "$ns" addr add "10.244.$i.1/32" dev ipip0
	ip -n "$ns" route add "10.244.$j.0/24" dev ipip0
	echo "[{\"subnet\":\"10.244.$j.0/24\",\"underlay_ip\":\"$peer\"}]" >"$dir/$ns.json"
}
setup_node "$A" 192.168.77.1 1 192.168.77.2 2
setup_node "$B" 192.168.77.2 2 192.168.77.1 1

inns "$B" iperf3 -s -D -I "$dir/iperf.pid" >/dev/null
sleep 0.3
pids+=("$(cat "$dir/iperf.pid")")

# Gbit/s received, one stream, SECS seconds.
run() {
	inns "$A" iperf3 -c "$1" -t "$SECS" -f g | awk '/receiver/ {print $(NF-2)}'
}

start_ipipd() { # batch [offload]
	for n in "$A:192.168.77.1" "$B:192.168.77.2"; do
		ns=${n%%:*}
		RCON_IPIP_BATCH=$1 RCON_IPIP_OFFLOAD=${2:-1} inns "$ns" "$RCON" ipipd --tun ipip0 --local "${n#*:}" --peers "$dir/$ns.json" >"$dir/pid" &
		while [[ ! -s $dir/pid ]]; do sleep 0.05; done
		pids+=("$(cat "$dir/pid")")
		: >"$dir/pid"
	done
}
stop_ipipd() {
	kill "${pids[-1]}" "${pids[-2]}"
	unset 'pids[-1]' 'pids[-1]'
	wait 2>/dev/null || true
}

plain=$(run 192.168.77.2)
vxlan=$(run 10.245.2.0)
start_ipipd 64
ipip=$(run 10.244.2.1)
stop_ipipd
start_ipipd 64 0
ipipn=$(run 10.244.2.1)
stop_ipipd
start_ipipd 1
ipip1=$(run 10.244.2.1)
stop_ipipd

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '%-11s %8s %12s\n' path Gbit/s "vs vxlan"
printf '%-11s %8s %12s\n' plain "$plain" "$(ratio "$plain" "$vxlan")"
printf '%-11s %8s %12s\n' vxlan "$vxlan" 1.00
printf '%-11s %8s %12s\n' ipip "$ipip" "$(ratio "$ipip" "$vxlan")"
printf '%-11s %8s %12s\n' ipip-nooff "$ipipn" "$(ratio "$ipipn" "$vxlan")"
printf '%-11s %8s %12s\n' ipip-b1 "$ipip1" "$(ratio "$ipip1" "$vxlan")"
echo "(ipip vs ipip-b1: $(ratio "$ipip" "$ipip1")x; $(nproc) cores, kernel $(uname -r))"
