#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh): rcon's eBPF IPIP plane (node b,
# tc programs on rcon-ebpf and the underlay) against the kernel's ipip device
# (node a), over a veth underlay with its default offloads on (so the kernel's
# ipip hands node b 64 KB GSO packets with unfinished inner checksums, and
# node b's egress program sends TSO packets that node a's kernel segments).
#
# Checks: Debian 6.1 loads and attaches the programs; ping, DF pings of 1400
# and 1480 bytes and 1 MB TCP by md5, both ways; RFC 2003 on the wire (IP
# proto 4 between the node addresses, the pods' inside); `cluster reset`
# leaves no rcon- link on either node.
set -u
SCENARIO=cluster-ipip-ebpf
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh

on_fail() {
	for n in $NODES; do
		echo "$SCENARIO: --- state of $n"
		$IP -n "$n" -br link 2>&1 | sed 's/^/  /'
		$IP -n "$n" route 2>&1 | sed 's/^/  /'
		$IP -n "$n" neigh 2>&1 | sed 's/^/  /'
	done
}

step "rcon $(rcon --version 2>&1)"
underlay
node_up nodea kernel
node_up nodeb ebpf
plane=$(rcon_in nodeb cluster inspect | grep '"ipip_plane"')
echo "$plane" | grep -q ebpf || fail "nodeb's data plane is not ebpf: $plane"
a=$(pod_ip nodea)
b=$(pod_ip nodeb)
pings nodea "$b" "kernel -> ebpf"
pings nodeb "$a" "ebpf -> kernel"
tcp nodea nodeb "kernel ipip -> ebpf ipip"
tcp nodeb nodea "ebpf ipip -> kernel ipip"

if command -v tcpdump >/dev/null; then
	in_node nodea tcpdump -Z root -l -nn -v -i u0 -c 2 'ip proto 4' >/tmp/cap 2>/tmp/cap.err &
	tpid=$!
	i=0
	until grep -q 'listening on' /tmp/cap.err; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "tcpdump did not start: $(cat /tmp/cap.err)"
		sleep 0.1
	done
	in_pod nodeb ping -c 2 -w 10 "$a" >/dev/null || fail "ping during the capture"
	wait $tpid 2>/dev/null
	sed 's/^/  wire: /' /tmp/cap | head -n 4
	for want in '192.168.50.2 > 192.168.50.1: ' 'proto IPIP (4)' "$b > $a: ICMP echo request"; do
		grep -qF "$want" /tmp/cap || fail "the underlay capture shows no \"$want\""
	done
	step "wire: IP proto 4 from nodeb's programs, inner $b -> $a"
fi
teardown
step "kernel-ebpf ok"
