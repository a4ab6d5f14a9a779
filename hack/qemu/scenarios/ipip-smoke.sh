#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh): proves the stock kernel's ipip
# path with plain iproute2, and that the shipped rcon binary runs.
#
# Two namespaces joined by a veth underlay (192.168.50.1/24, .2/24), an ipip
# tunnel in each, inner addresses 10.244.1.1 and 10.244.2.1 routed onlink
# over the tunnel, and a ping across it that must answer.
# busybox sh prefers its own applets: iproute2 is called by full path.
set -u
IP=/usr/sbin/ip

fail() {
	echo "$*" >"$RCON_QEMU_REASON"
	echo "ipip-smoke: FAIL: $*"
	exit 1
}
step() {
	echo "ipip-smoke: $*"
}

step "rcon --version"
rcon --version || fail "rcon --version did not run"

step "underlay: veth between n1 and n2"
$IP netns add n1 || fail "netns add n1"
$IP netns add n2 || fail "netns add n2"
$IP link add u1 netns n1 type veth peer name u2 netns n2 || fail "veth"
$IP -n n1 addr add 192.168.50.1/24 dev u1
$IP -n n2 addr add 192.168.50.2/24 dev u2
for n in n1 n2; do
	$IP -n $n link set lo up
done
$IP -n n1 link set u1 up
$IP -n n2 link set u2 up

step "ipip tunnels"
$IP -n n1 link add tun0 type ipip local 192.168.50.1 remote 192.168.50.2 || fail "ip link add type ipip (n1)"
$IP -n n2 link add tun0 type ipip local 192.168.50.2 remote 192.168.50.1 || fail "ip link add type ipip (n2)"
$IP -n n1 addr add 10.244.1.1/32 dev tun0
$IP -n n2 addr add 10.244.2.1/32 dev tun0
$IP -n n1 link set tun0 up
$IP -n n2 link set tun0 up
# The peer's subnet via its inner address, onlink: no neighbour on an ipip link.
$IP -n n1 route add 10.244.2.0/24 via 10.244.2.1 dev tun0 onlink || fail "route n1"
$IP -n n2 route add 10.244.1.0/24 via 10.244.1.1 dev tun0 onlink || fail "route n2"
$IP -n n1 -d link show tun0

step "underlay ping"
$IP netns exec n1 ping -c 1 -W 2 192.168.50.2 || fail "underlay ping 192.168.50.1 -> .2"

step "ping across the tunnel"
$IP netns exec n1 ping -c 3 -A -W 2 -I 10.244.1.1 10.244.2.1 || fail "ping 10.244.1.1 -> 10.244.2.1 over ipip"
$IP netns exec n2 ping -c 1 -W 2 -I 10.244.2.1 10.244.1.1 || fail "ping 10.244.2.1 -> 10.244.1.1 over ipip"

# The packets really went through the tunnel: its counter moved.
stats=$($IP netns exec n2 cat /sys/class/net/tun0/statistics/rx_packets)
[ "${stats:-0}" -ge 4 ] || fail "tun0 in n2 received $stats packets, want >= 4"
step "n2 tun0 rx_packets=$stats"

# The nft side rcon will need: the modules and nft's libraries must take the
# kinds of rules src/net/firewall/nftables.rs writes (interval sets, verdict
# maps, concatenations, ct status/state, masquerade, fib, numgen dnat).
step "nft: rcon's expression kinds"
$IP netns exec n1 nft -f - <<'EOF' || fail "nft rejected a ruleset of rcon's expression kinds"
table ip smoke {
	set subnets { type ipv4_addr; flags interval; elements = { 10.244.0.0/16 } }
	map fwd_src { type ipv4_addr : verdict; flags interval; }
	map pub_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
	chain out { ip daddr != 10.244.0.0/16 masquerade; }
	chain svc { meta l4proto tcp dnat ip to numgen inc mod 2 map { 0 : 10.244.1.2 . 80, 1 : 10.244.1.3 . 80 }; }
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct status dnat accept
		ct state established,related accept
		ip saddr vmap @fwd_src
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr @subnets jump out
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local dnat ip to meta l4proto . th dport map @pub_any
	}
}
EOF
$IP netns exec n1 nft -j list table ip smoke >/dev/null || fail "nft -j list table"

$IP netns del n1
$IP netns del n2
step "ok"
