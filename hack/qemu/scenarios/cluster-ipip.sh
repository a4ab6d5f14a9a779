#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh): rcon's ipip backend between two
# nodes on a kernel that has ipip.ko, with real packets.
#
# Two node namespaces, nodea and nodeb, joined by a veth underlay u0
# (192.168.50.1/24, .2/24, MTU 1500); each runs its own rcon (private
# RCON_ROOT, RCON_DATA_ROOT, RCON_NETNS_DIR under /tmp/NODE) and has one pod:
# a named netns attached to the node's `cluster` network.
#
#   phase 1: kernel IPIP on both nodes (rcon-ipip, type ipip): ping, DF pings
#            of 1400 bytes and of the full 1480, 1 MB TCP by md5, IP proto 4
#            with the pods' addresses inside on the underlay, `node rm` cuts
#            the peer off.
#   phase 2: node b re-inits with the userspace data plane (TUN + rcon ipipd)
#            while node a keeps the kernel's: ping, DF pings and 1 MB TCP both
#            ways (RFC 2003 on the wire, both implementations). Node a's
#            underlay veth has its tx offloads off here (ethtool -K u0 tx
#            off): it puts on the wire what a NIC puts there, whole checksums
#            and MTU-sized packets, where a veth passes the kernel's
#            unfinished checksums and 64 KB GSO packets to the peer as they
#            are. The userspace plane receiving those is cluster-ipip-offload.sh.
#
# Progress lines start with "cluster-ipip:"; each phase ends with
# "cluster-ipip: phaseN ... ok". busybox sh prefers its own applets: iproute2
# is called by full path, nsenter is busybox's.
# busybox has no pgrep: processes are found in ps.
# shellcheck disable=SC2009
set -u
IP=/usr/sbin/ip
NODES="nodea nodeb"

fail() {
	echo "$*" >"$RCON_QEMU_REASON"
	echo "cluster-ipip: FAIL: $*"
	for n in $NODES; do
		echo "cluster-ipip: --- state of $n"
		$IP -n "$n" -br link 2>&1 | sed 's/^/  /'
		$IP -n "$n" -br addr 2>&1 | sed 's/^/  /'
		$IP -n "$n" route 2>&1 | sed 's/^/  /'
	done
	exit 1
}
step() {
	echo "cluster-ipip: $*"
}
# rcon NODE ARGS...: rcon inside NODE's netns with NODE's private state.
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
counter() { # counter NODE DEV rx|tx: bytes (GSO makes packets count 64 KB as one)
	in_node "$1" $IP -s link show "$2" | awk -v w="$3" '
		/RX:/ { getline; rx = $1 }
		/TX:/ { getline; tx = $1 }
		END { print (w == "rx" ? rx : tx) + 0 }'
}

# init NODE SUBNET MODE
init() {
	out=$(rcon_in "$1" cluster init --cidr 10.244.0.0/16 --node-subnet "$2" --backend ipip \
		--underlay u0 --ipip-mode "$3" 2>&1) || fail "cluster init --ipip-mode $3 on $1: $out"
	step "$1: cluster init --ipip-mode $3: $(echo "$out" | tr '\n' ' ')"
}
# peer ON NAME UNDERLAY SUBNET
peer() {
	out=$(rcon_in "$1" node add "$2" --underlay-ip "$3" --subnet "$4" 2>&1) || fail "node add $2 on $1: $out"
}
# pod NODE: a fresh netns `pod` attached to the node's cluster network.
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

# tcp SERVER CLIENT WHAT: 1 MB from SERVER's pod to CLIENT's over TCP, by md5.
port=7000
tcp() {
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
		[ $i -lt 50 ] || fail "$3: the nc server on $1 did not listen"
		sleep 0.1
	done
	got=$(in_pod "$2" timeout 60 nc -w 10 "$srv_ip" "$port" </dev/null | md5sum | cut -d' ' -f1)
	kill "$srv" 2>/dev/null
	wait "$srv" 2>/dev/null
	[ "$got" = "$want" ] || fail "$3: 1 MB TCP $1 -> $2 arrived changed (md5 $got, want $want)"
	step "$3: 1 MB TCP $1 -> $2 ok (md5 $got)"
}

step "rcon $(rcon --version 2>&1)"

step "underlay: veth u0 between nodea (192.168.50.1) and nodeb (192.168.50.2)"
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
in_node nodea ping -c 1 -w 5 192.168.50.2 >/dev/null || fail "underlay ping nodea -> nodeb"

# ---- phase 1: kernel <-> kernel
step "phase1: kernel IPIP on both nodes"
init nodea 10.244.1.0/24 kernel
init nodeb 10.244.2.0/24 kernel
peer nodea nodeb 192.168.50.2 10.244.2.0/24
peer nodeb nodea 192.168.50.1 10.244.1.0/24
link=$(in_node nodea $IP -d link show rcon-ipip 2>&1) || fail "phase1: no rcon-ipip on nodea: $link"
echo "$link" | sed 's/^/  /'
echo "$link" | grep -q 'ipip ' || fail "phase1: rcon-ipip on nodea is not an ipip link: $link"
echo "$link" | grep -q 'local 192.168.50.1' || fail "phase1: rcon-ipip on nodea is not local 192.168.50.1"
in_node nodea $IP route | grep 10.244.2.0 | sed 's/^/  route: /'
pod nodea
pod nodeb
a=$(pod_ip nodea)
b=$(pod_ip nodeb)
if [ -z "$a" ] || [ -z "$b" ]; then fail "phase1: pods without addresses (a=$a b=$b)"; fi

rx0=$(counter nodeb rcon-ipip rx)
tx0=$(counter nodea rcon-ipip tx)
pings nodea "$b" phase1
pings nodeb "$a" phase1
tcp nodeb nodea phase1
tcp nodea nodeb phase1
rx1=$(counter nodeb rcon-ipip rx)
tx1=$(counter nodea rcon-ipip tx)
step "phase1: rcon-ipip bytes: nodea tx $tx0 -> $tx1, nodeb rx $rx0 -> $rx1"
# Each way carried a 1 MB stream: nodea's tunnel sent at least nodea's MB.
[ "$((tx1 - tx0))" -ge 1048576 ] || fail "phase1: nodea rcon-ipip sent only $((tx1 - tx0)) bytes"
[ "$((rx1 - rx0))" -ge 1048576 ] || fail "phase1: nodeb rcon-ipip received only $((rx1 - rx0)) bytes"

# The wire: IP proto 4, outer node addresses, the pods' inside.
if command -v tcpdump >/dev/null; then
	cap=/tmp/cap1.txt
	in_node nodeb tcpdump -Z root -l -nn -v -i u0 -c 4 'ip proto 4' >$cap 2>/tmp/cap1.err &
	tpid=$!
	i=0
	until grep -q 'listening on' /tmp/cap1.err; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "phase1: tcpdump did not start: $(cat /tmp/cap1.err)"
		sleep 0.1
	done
	in_pod nodea ping -c 3 -w 10 "$b" >/dev/null || fail "phase1: ping during the capture"
	i=0
	until grep -q "> $b: ICMP echo request" $cap && grep -q "> $a: ICMP echo reply" $cap; do
		i=$((i + 1))
		[ $i -lt 50 ] || break
		sleep 0.1
	done
	kill $tpid 2>/dev/null
	wait $tpid 2>/dev/null
	sed 's/^/  wire: /' $cap | head -n 8
	for want in '192.168.50.1 > 192.168.50.2: ' 'proto IPIP (4)' "$a > $b: ICMP echo request" \
		"$b > $a: ICMP echo reply"; do
		grep -qF "$want" $cap || fail "phase1: the underlay capture shows no \"$want\""
	done
	step "phase1: wire: IP proto 4 192.168.50.x, inner $a <-> $b"
else
	step "phase1: no tcpdump in the image: rcon-ipip counters checked only"
fi

out=$(rcon_in nodea node rm nodeb 2>&1) || fail "phase1: node rm nodeb on nodea: $out"
in_node nodea $IP route | grep -q 10.244.2.0 && fail "phase1: nodea keeps a route to 10.244.2.0/24 after node rm"
in_pod nodea ping -c 1 -w 2 "$b" >/dev/null 2>&1 && fail "phase1: $b still answers nodea's pod after node rm"
step "phase1: node rm nodeb: route gone, ping fails"
peer nodea nodeb 192.168.50.2 10.244.2.0/24
in_pod nodea ping -c 1 -w 10 "$b" >/dev/null || fail "phase1: no ping after node add nodeb again"
step "phase1 kernel-kernel ok"

# ---- phase 2: kernel (nodea) <-> userspace (nodeb)
step "phase2: nodeb switches to the userspace data plane, nodea keeps the kernel's"
out=$(rcon_in nodeb cluster reset -f 2>&1) || fail "phase2: cluster reset -f on nodeb: $out"
in_node nodeb $IP link show rcon-ipip >/dev/null 2>&1 && fail "phase2: cluster reset left rcon-ipip on nodeb"
init nodeb 10.244.2.0/24 userspace
peer nodeb nodea 192.168.50.1 10.244.1.0/24
in_node nodeb $IP link show rcon-ipip >/dev/null 2>&1 && fail "phase2: userspace mode made rcon-ipip on nodeb"
link=$(in_node nodeb $IP -d link show rcon-tun 2>&1) || fail "phase2: no rcon-tun on nodeb: $link"
echo "$link" | sed 's/^/  /'
echo "$link" | grep -q 'tun ' || fail "phase2: rcon-tun on nodeb is not a tun device"
ps | grep '[i]pipd' | sed 's/^/  daemon: /'
ps | grep -q '[r]con ipipd' || fail "phase2: no rcon ipipd process"
pod nodeb
b=$(pod_ip nodeb)
[ -n "$b" ] || fail "phase2: nodeb's pod has no address"
command -v ethtool >/dev/null || fail "phase2: no ethtool in the image (install ethtool on the host)"
out=$(in_node nodea ethtool -K u0 tx off 2>&1) || fail "phase2: ethtool -K u0 tx off on nodea: $out"
step "phase2: nodea u0: $(in_node nodea ethtool -k u0 | grep -E '^(tx-checksumming|tcp-segmentation-offload):' | tr '\n' ' ')"

pings nodea "$b" phase2
pings nodeb "$a" phase2
tcp nodeb nodea phase2
tcp nodea nodeb phase2
step "phase2 kernel-userspace ok"

# ---- clean up
for n in $NODES; do
	rcon_in "$n" netns delete pod >/dev/null 2>&1
	out=$(rcon_in "$n" cluster reset -f 2>&1) || fail "cluster reset -f on $n: $out"
	left=$(in_node "$n" $IP -o link | grep -c 'rcon-')
	[ "$left" -eq 0 ] || fail "cluster reset -f left rcon- links on $n: $(in_node "$n" $IP -o link)"
done
ps | grep -q '[r]con ipipd' && fail "rcon ipipd still runs after cluster reset"
for n in $NODES; do
	$IP netns del "$n"
done
step "ok"
