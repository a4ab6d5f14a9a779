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
SCENARIO=cluster-ipip-offload
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh

csum_errors() { # the Tcp InCsumErrors counter of NODE's pod
	# shellcheck disable=SC2016 # awk's $1 and $NF
	in_pod "$1" awk '$1 == "Tcp:" { if (h) print $NF; h = 1 }' /proc/net/snmp
}
# on_fail: the pods' checksum errors and the inner checksums on the wire.
on_fail() {
	step "Tcp InCsumErrors: nodea's pod $(csum_errors nodea), nodeb's pod $(csum_errors nodeb)"
	if command -v tcpdump >/dev/null; then
		in_node nodeb tcpdump -Z root -l -nn -vv -i u0 -c 2 'ip proto 4 and ip[29] = 6' >/tmp/cap 2>/dev/null &
		sleep 1
		in_pod nodea timeout 3 nc -w 2 "$b" 9 </dev/null >/dev/null 2>&1
		sleep 1
		grep -o 'cksum 0x[0-9a-f]* ([^)]*)' /tmp/cap | sed 's/^/  inner TCP from nodea on the wire: /'
	fi
}

b=
underlay
if command -v ethtool >/dev/null; then
	step "nodea u0: $(in_node nodea ethtool -k u0 | grep -E '^(tx-checksumming|tcp-segmentation-offload):' | tr '\n' ' ')"
fi
node_up nodea kernel
node_up nodeb userspace
b=$(pod_ip nodeb)
in_pod nodea ping -c 2 -w 10 "$b" >/dev/null || fail "no ping nodea -> nodeb"
tcp nodea nodeb "kernel ipip -> userspace ipip with offloads"
tcp nodeb nodea "kernel ipip <- userspace ipip with offloads"
teardown
step "kernel-offload-userspace ok"
