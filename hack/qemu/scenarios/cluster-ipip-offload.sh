#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh): rcon's userspace IPIP plane
# (node b) receiving from the kernel's (node a) over a veth underlay with its
# default offloads on.
#
# A veth hands the peer namespace the sender's skb as it is: the kernel's
# ipip device leaves the inner TCP checksum unfinished (CHECKSUM_PARTIAL:
# only the pseudo-header sum in the field) and sends up to 64 KB GSO packets
# in one IPIP datagram. The same reaches a VM's raw socket from a virtio NIC
# (NEEDS_CSUM, GSO) and a host's from GRO. The kernel's ipip receiver copes
# (phase 1 of cluster-ipip.sh); a raw-socket receiver that writes the inner
# packet to a TUN as it came in does not: the pod drops the segments as bad
# checksums (Tcp InCsumErrors) and a 64 KB inner packet cannot be forwarded
# onto the 1480-byte pod link.
#
# Checks: TCP connects and carries 1 MB both ways, by md5, with node a's
# underlay as the kernel sets it up (tx checksum and TSO on). On failure the
# pods' Tcp InCsumErrors and the inner checksums tcpdump sees are printed.
set -u
IP=/usr/sbin/ip
NODES="nodea nodeb"

step() {
	echo "cluster-ipip-offload: $*"
}
in_node() {
	n=$1
	shift
	nsenter --net=/var/run/netns/"$n" "$@"
}
in_pod() {
	n=$1
	shift
	nsenter --net=/tmp/"$n"/netns/pod "$@"
}
csum_errors() { # the Tcp InCsumErrors counter of NODE's pod
	# shellcheck disable=SC2016 # awk's $1 and $NF
	in_pod "$1" awk '$1 == "Tcp:" { if (h) print $NF; h = 1 }' /proc/net/snmp
}
fail() {
	echo "$*" >"$RCON_QEMU_REASON"
	step "FAIL: $*"
	step "Tcp InCsumErrors: nodea's pod $(csum_errors nodea), nodeb's pod $(csum_errors nodeb)"
	if command -v tcpdump >/dev/null; then
		in_node nodeb tcpdump -Z root -l -nn -vv -i u0 -c 2 'ip proto 4 and ip[29] = 6' >/tmp/cap 2>/dev/null &
		sleep 1
		in_pod nodea timeout 3 nc -w 2 "$b" 9 </dev/null >/dev/null 2>&1
		sleep 1
		grep -o 'cksum 0x[0-9a-f]* ([^)]*)' /tmp/cap | sed 's/^/  inner TCP from nodea on the wire: /'
	fi
	exit 1
}
rcon_in() {
	n=$1
	shift
	nsenter --net=/var/run/netns/"$n" env RCON_ROOT=/tmp/"$n"/run RCON_DATA_ROOT=/tmp/"$n"/lib \
		RCON_NETNS_DIR=/tmp/"$n"/netns rcon "$@"
}
pod_ip() {
	in_pod "$1" $IP -o -4 addr show eth0 | sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p'
}
# node NAME UNDERLAY_IP SUBNET MODE PEER PEER_IP PEER_SUBNET
node() {
	out=$(rcon_in "$1" cluster init --cidr 10.244.0.0/16 --node-subnet "$3" --backend ipip \
		--underlay u0 --ipip-mode "$4" 2>&1) || fail "cluster init --ipip-mode $4 on $1: $out"
	out=$(rcon_in "$1" node add "$5" --underlay-ip "$6" --subnet "$7" 2>&1) || fail "node add $5 on $1: $out"
	out=$(rcon_in "$1" netns add pod 2>&1) || fail "netns add pod on $1: $out"
	out=$(rcon_in "$1" network attach --netns /tmp/"$1"/netns/pod cluster 2>&1) ||
		fail "network attach cluster on $1: $out"
	in_pod "$1" $IP link set lo up
	step "$1: ipip $4, pod $(pod_ip "$1")"
}
port=7000
tcp() { # tcp SERVER CLIENT: 1 MB from SERVER's pod to CLIENT's, by md5
	port=$((port + 1))
	dd if=/dev/urandom of=/tmp/blob bs=1024 count=1024 2>/dev/null
	want=$(md5sum </tmp/blob | cut -d' ' -f1)
	srv_ip=$(pod_ip "$1")
	in_pod "$1" nc -l -p "$port" -e cat /tmp/blob &
	srv=$!
	i=0
	until in_pod "$1" netstat -tln | grep -q ":$port "; do
		i=$((i + 1))
		[ $i -lt 50 ] || fail "the nc server on $1 did not listen"
		sleep 0.1
	done
	got=$(in_pod "$2" timeout 60 nc -w 10 "$srv_ip" "$port" </dev/null | md5sum | cut -d' ' -f1)
	kill "$srv" 2>/dev/null
	wait "$srv" 2>/dev/null
	[ "$got" = "$want" ] || fail "1 MB TCP $1 -> $2 (kernel ipip -> userspace ipip with offloads) arrived changed or not at all (md5 $got, want $want)"
	step "1 MB TCP $1 -> $2 ok (md5 $got)"
}

b=
for n in $NODES; do
	$IP netns add "$n" || fail "netns add $n"
	$IP -n "$n" link set lo up
	mkdir -p /tmp/"$n"/run /tmp/"$n"/lib /tmp/"$n"/netns
done
$IP link add u0 netns nodea mtu 1500 type veth peer name u0 netns nodeb mtu 1500 || fail "veth underlay"
$IP -n nodea addr add 192.168.50.1/24 dev u0
$IP -n nodeb addr add 192.168.50.2/24 dev u0
$IP -n nodea link set u0 up
$IP -n nodeb link set u0 up
if command -v ethtool >/dev/null; then
	step "nodea u0: $(in_node nodea ethtool -k u0 | grep -E '^(tx-checksumming|tcp-segmentation-offload):' | tr '\n' ' ')"
fi
node nodea 192.168.50.1 10.244.1.0/24 kernel nodeb 192.168.50.2 10.244.2.0/24
node nodeb 192.168.50.2 10.244.2.0/24 userspace nodea 192.168.50.1 10.244.1.0/24
b=$(pod_ip nodeb)
in_pod nodea ping -c 2 -w 10 "$b" >/dev/null || fail "no ping nodea -> nodeb"
tcp nodea nodeb
tcp nodeb nodea
for n in $NODES; do
	rcon_in "$n" netns delete pod >/dev/null 2>&1
	out=$(rcon_in "$n" cluster reset -f 2>&1) || fail "cluster reset -f on $n: $out"
	$IP netns del "$n"
done
step "kernel-offload-userspace ok"
