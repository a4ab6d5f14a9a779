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
SCENARIO=cluster-ipip
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh

# on_fail: each node's links, addresses and routes.
on_fail() {
	for n in $NODES; do
		echo "cluster-ipip: --- state of $n"
		$IP -n "$n" -br link 2>&1 | sed 's/^/  /'
		$IP -n "$n" -br addr 2>&1 | sed 's/^/  /'
		$IP -n "$n" route 2>&1 | sed 's/^/  /'
	done
}
counter() { # counter NODE DEV rx|tx: bytes (GSO makes packets count 64 KB as one)
	in_node "$1" $IP -s link show "$2" | awk -v w="$3" '
		/RX:/ { getline; rx = $1 }
		/TX:/ { getline; tx = $1 }
		END { print (w == "rx" ? rx : tx) + 0 }'
}

step "rcon $(rcon --version 2>&1)"

step "underlay: veth u0 between nodea (192.168.50.1) and nodeb (192.168.50.2)"
underlay
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
teardown
ps | grep -q '[r]con ipipd' && fail "rcon ipipd still runs after cluster reset"
step "ok"
