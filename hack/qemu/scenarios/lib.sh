# shellcheck shell=sh
# Helpers shared by the two-node scenarios (cluster-ipip.sh,
# cluster-ipip-offload.sh, cluster-ipip-ebpf.sh, bench-ipip-kernel.sh). mkinitramfs.sh puts this
# file in the VM as /scenario-lib.sh; a scenario sets SCENARIO (its name, the
# prefix of its console lines) and sources it:
#
#   SCENARIO=cluster-ipip
#   . /scenario-lib.sh
#
# The world: two node namespaces, nodea and nodeb, joined by a veth underlay
# u0 (192.168.50.1/24, .2/24, MTU 1500); each runs its own rcon (private
# RCON_ROOT, RCON_DATA_ROOT, RCON_NETNS_DIR under /tmp/NODE) and has one pod:
# a named netns `pod` attached to the node's `cluster` network (ipip,
# 10.244.0.0/16, nodea 10.244.1.0/24, nodeb 10.244.2.0/24).
#
# Every namespace a scenario makes starts from the test worlds' sysctl
# baseline: `netns NAME` (ip netns add, the baseline, lo up), as
# runtime-tests/common/mod.rs new_netns does; hack/lib/netns-baseline.conf
# says why and what.
#
# busybox sh prefers its own applets: iproute2 is called by full path,
# nsenter is busybox's.
IP=/usr/sbin/ip
NODES="nodea nodeb"
export NETNS_BASELINE_CONF=/netns-baseline.conf # read by netns_baseline
# shellcheck source=hack/lib/netns-baseline.sh
. /netns-baseline.sh

# on_fail: what a scenario prints before fail exits (state, counters);
# redefine it after sourcing this file.
on_fail() {
	:
}
# fail REASON: the verdict's reason, then on_fail, then exit 1.
fail() {
	echo "$*" >"$RCON_QEMU_REASON"
	step "FAIL: $*"
	on_fail
	exit 1
}
step() {
	echo "$SCENARIO: $*"
}

# rcon_in NODE ARGS...: rcon inside NODE's netns with NODE's private state.
rcon_in() {
	n=$1
	shift
	nsenter --net=/var/run/netns/"$n" env RCON_ROOT=/tmp/"$n"/run RCON_DATA_ROOT=/tmp/"$n"/lib \
		RCON_NETNS_DIR=/tmp/"$n"/netns rcon "$@"
}
# in_node NODE CMD...: CMD in NODE's netns.
in_node() {
	n=$1
	shift
	nsenter --net=/var/run/netns/"$n" "$@"
}
# in_pod NODE CMD...: CMD in NODE's pod.
in_pod() {
	n=$1
	shift
	nsenter --net=/tmp/"$n"/netns/pod "$@"
}
pod_ip() {
	in_pod "$1" $IP -o -4 addr show eth0 | sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p'
}

# netns NAME: a namespace of the world: ip netns add, the sysctl baseline
# (netns_baseline, /netns-baseline.sh), lo up.
netns() {
	$IP netns add "$1" || fail "netns add $1"
	netns_baseline "$1" || fail "the sysctl baseline in $1"
	$IP -n "$1" link set lo up
}
# sysctl_in NS KEY: KEY's value in NS (dotted, e.g. net.ipv4.ip_forward).
sysctl_in() {
	in_node "$1" cat /proc/sys/"$(echo "$2" | tr . /)"
}

# underlay: the node namespaces and the veth u0 between them.
underlay() {
	for n in $NODES; do
		netns "$n"
		mkdir -p /tmp/"$n"/run /tmp/"$n"/lib /tmp/"$n"/netns
	done
	$IP link add u0 netns nodea mtu 1500 type veth peer name u0 netns nodeb mtu 1500 || fail "veth underlay"
	$IP -n nodea addr add 192.168.50.1/24 dev u0
	$IP -n nodeb addr add 192.168.50.2/24 dev u0
	$IP -n nodea link set u0 up
	$IP -n nodeb link set u0 up
}

# init NODE SUBNET MODE: cluster init on NODE, ipip in MODE (kernel|ebpf|userspace).
init() {
	out=$(rcon_in "$1" cluster init --cidr 10.244.0.0/16 --node-subnet "$2" --backend ipip \
		--underlay u0 --ipip-mode "$3" 2>&1) || fail "cluster init --ipip-mode $3 on $1: $out"
	step "$1: cluster init --ipip-mode $3: $(echo "$out" | tr '\n' ' ')"
}
# peer ON NAME UNDERLAY SUBNET
peer() {
	out=$(rcon_in "$1" node add "$2" --underlay-ip "$3" --subnet "$4" 2>&1) || fail "node add $2 on $1: $out"
}
# pod NODE: a fresh netns `pod` attached to the node's cluster network; sets
# mtu to its eth0's, which must be 1480 (1500 - 20 for IPIP).
pod() {
	rcon_in "$1" netns delete pod >/dev/null 2>&1
	out=$(rcon_in "$1" netns add pod 2>&1) || fail "netns add pod on $1: $out"
	out=$(rcon_in "$1" network attach --netns /tmp/"$1"/netns/pod cluster 2>&1) ||
		fail "network attach cluster on $1: $out"
	in_pod "$1" $IP link set lo up
	mtu=$(in_pod "$1" $IP -o link show eth0 | sed 's/.* mtu \([0-9]*\) .*/\1/')
	step "$1: pod $(pod_ip "$1"), eth0 mtu $mtu"
	[ "$mtu" = 1480 ] || fail "pod on $1: eth0 mtu $mtu, want 1480 (1500 - 20 for IPIP)"
}
# node_up NODE MODE: init NODE (nodea or nodeb) in MODE, add the other node
# as its peer, and give it a pod.
node_up() {
	case $1 in
	nodea)
		init nodea 10.244.1.0/24 "$2"
		peer nodea nodeb 192.168.50.2 10.244.2.0/24
		;;
	nodeb)
		init nodeb 10.244.2.0/24 "$2"
		peer nodeb nodea 192.168.50.1 10.244.1.0/24
		;;
	*) fail "node_up: no node $1" ;;
	esac
	pod "$1"
}

# pings FROM TO_IP WHAT: a ping, then DF pings of 1400 bytes and of the full
# ipip MTU (1480: busybox ping sets DF) must answer.
pings() {
	in_pod "$1" ping -c 2 -w 10 "$2" >/dev/null || fail "$3: no ping $1 -> $2"
	for size in 1372 $((1480 - 28)); do
		in_pod "$1" ping -c 1 -w 10 -s "$size" "$2" >/dev/null ||
			fail "$3: a $((size + 28))-byte DF ping $1 -> $2 did not answer"
	done
	step "$3: ping, DF 1400 and 1480 bytes $1 -> $2 ok"
}

# tcp SERVER CLIENT [WHAT]: 1 MB from SERVER's pod to CLIENT's over TCP, by md5.
port=7000
tcp() {
	what=${3:+$3: }
	port=$((port + 1))
	dd if=/dev/urandom of=/tmp/blob bs=1024 count=1024 2>/dev/null
	want=$(md5sum </tmp/blob | cut -d' ' -f1)
	srv_ip=$(pod_ip "$1")
	in_pod "$1" nc -l -p "$port" -e cat /tmp/blob &
	srv=$!
	# The listener is up when its netns shows it.
	i=0
	until in_pod "$1" netstat -tln | grep -q ":$port "; do
		i=$((i + 1))
		[ $i -lt 50 ] || fail "${what}the nc server on $1 did not listen"
		sleep 0.1
	done
	got=$(in_pod "$2" timeout 60 nc -w 10 "$srv_ip" "$port" </dev/null | md5sum | cut -d' ' -f1)
	kill "$srv" 2>/dev/null
	wait "$srv" 2>/dev/null
	[ "$got" = "$want" ] || fail "${what}1 MB TCP $1 -> $2 arrived changed or not at all (md5 $got, want $want)"
	step "${what}1 MB TCP $1 -> $2 ok (md5 $got)"
}

# teardown: per node, the pod goes, `cluster reset -f` must leave no rcon-
# link, and the namespace goes.
teardown() {
	for n in $NODES; do
		rcon_in "$n" netns delete pod >/dev/null 2>&1
		out=$(rcon_in "$n" cluster reset -f 2>&1) || fail "cluster reset -f on $n: $out"
		left=$(in_node "$n" $IP -o link | grep -c 'rcon-')
		[ "$left" -eq 0 ] || fail "cluster reset -f left rcon- links on $n: $(in_node "$n" $IP -o link)"
		$IP netns del "$n"
	done
}
