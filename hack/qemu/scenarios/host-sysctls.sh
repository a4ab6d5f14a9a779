#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh): a test world on a host whose
# own network namespace forwards, filters reverse paths strictly and routes
# 127/8 off lo, as a Docker or Kubernetes host does. The dev machines' root
# namespace may not be touched (TESTING.md); the VM's is ours.
#
# A new network namespace copies net.ipv4.conf.{all,default}.* from the root
# namespace (never from the namespace it was made from), so the world writes
# the sysctl baseline (hack/lib/netns-baseline.conf, netns_baseline) into each
# namespace it makes, as runtime-tests/common/mod.rs does. Checks:
#   - control: a namespace made without the baseline starts forwarding (the
#     VM reproduces the host), with rp_filter and route_localnet 1;
#   - the world's node, internet and lan namespaces start from the baseline
#     (forwarding 0, on a device made later too), and the node forwards
#     nothing: the internet cannot reach the lan behind the node;
#   - rcon's bridge network turns on ip_forward in the node and no more
#     (rp_filter and route_localnet stay 0), and records 0 as the value to
#     put back;
#   - a pod (a netns made by rcon, attached to the bridge network) reaches
#     the internet, which has no route back to the pod subnet: masquerade;
#   - a pod on an --internal network does not get out;
#   - when the last network goes, ip_forward is 0 again and the lan is out
#     of the internet's reach again (with an inherited 1 it would stay 1).
set -u
SCENARIO=host-sysctls
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh

NODE=node INET=inet LAN=lan
NODE_UP=203.0.113.2 INET_UP=203.0.113.1
LAN_GW=10.99.0.1 LAN_IP=10.99.0.2

on_fail() {
	for k in net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.ipv4.conf.all.route_localnet; do
		step "node $k=$(sysctl_in $NODE $k 2>/dev/null)"
	done
	in_node $NODE nft list ruleset 2>/dev/null | sed 's/^/  node nft: /'
	cat /tmp/$NODE/lib/forwarding.json 2>/dev/null | sed 's/^/  forwarding.json: /'
}

root_set() { # KEY VALUE in the VM's root namespace
	echo "$2" >/proc/sys/"$(echo "$1" | tr . /)" || fail "root namespace: writing $2 to $1"
}
want() { # NS KEY VALUE WHY
	got=$(sysctl_in "$1" "$2")
	[ "$got" = "$3" ] || fail "$1: $2 is $got, want $3 ($4)"
}
in_p() { # POD CMD...: CMD in a netns rcon made in the node
	p=$1
	shift
	nsenter --net=/tmp/$NODE/netns/"$p" "$@"
}
p_ip() {
	in_p "$1" $IP -o -4 addr show eth0 | sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p'
}
reaches() { # NS ADDR: one ping from NS (a world namespace) answers
	in_node "$1" ping -c 1 -W 2 "$2" >/dev/null 2>&1
}

step "the VM's root namespace as a Docker/Kubernetes host has it"
root_set net.ipv4.ip_forward 1
root_set net.ipv4.conf.all.forwarding 1
root_set net.ipv4.conf.default.forwarding 1
root_set net.ipv4.conf.all.rp_filter 1
root_set net.ipv4.conf.default.rp_filter 1
root_set net.ipv4.conf.all.route_localnet 1
root_set net.ipv4.conf.default.route_localnet 1
root_set net.ipv4.conf.all.proxy_arp 1
root_set net.bridge.bridge-nf-call-iptables 0
step "root: devconf_inherit_init_net=$(cat /proc/sys/net/core/devconf_inherit_init_net)"

step "control: a namespace made without the baseline inherits them"
$IP netns add bare || fail "netns add bare"
want bare net.ipv4.ip_forward 1 "copied from the root namespace: the VM does not reproduce a forwarding host"
want bare net.ipv4.conf.default.rp_filter 1 "copied from the root namespace"
want bare net.ipv4.conf.all.route_localnet 1 "copied from the root namespace"
# bridge-nf-call-* are per namespace since 5.3 and start from the module's
# defaults rather than copying: seen here, not required.
step "bare: bridge-nf-call-iptables=$(sysctl_in bare net.bridge.bridge-nf-call-iptables 2>/dev/null) (root's is 0)"
# ...nor from the namespace that makes it.
in_node bare sh -c "$IP netns add bare2" || fail "netns add bare2 from inside bare"
in_node bare sh -c "echo 0 >/proc/sys/net/ipv4/ip_forward"
want bare2 net.ipv4.ip_forward 1 "a new namespace copies the root namespace's, not its maker's"
$IP netns del bare2
$IP netns del bare

step "the world: node, inet and lan with the baseline"
for n in $NODE $INET $LAN; do
	netns "$n"
done
mkdir -p /tmp/$NODE/run /tmp/$NODE/lib /tmp/$NODE/netns
$IP link add up0 netns $NODE type veth peer name up1 netns $INET || fail "uplink veth"
$IP -n $NODE addr add $NODE_UP/24 dev up0
$IP -n $NODE link set up0 up
$IP -n $NODE route add default via $INET_UP
$IP -n $INET addr add $INET_UP/24 dev up1
$IP -n $INET link set up1 up
# The internet knows the lan behind the node, not the pods' subnets.
$IP -n $INET route add 10.99.0.0/24 via $NODE_UP
$IP link add lan0 netns $NODE type veth peer name eth0 netns $LAN || fail "lan veth"
$IP -n $NODE addr add $LAN_GW/24 dev lan0
$IP -n $NODE link set lan0 up
$IP -n $LAN addr add $LAN_IP/24 dev eth0
$IP -n $LAN link set eth0 up
$IP -n $LAN route add default via $LAN_GW
for n in $NODE $INET $LAN; do
	want "$n" net.ipv4.ip_forward 0 "the baseline"
	want "$n" net.ipv4.conf.all.rp_filter 0 "the baseline"
	want "$n" net.ipv4.conf.all.route_localnet 0 "the baseline"
	want "$n" net.ipv4.conf.all.proxy_arp 0 "the baseline"
done
want $NODE net.ipv4.conf.up0.forwarding 0 "a device made after the baseline copies conf.default"
want $NODE net.ipv4.conf.up0.rp_filter 0 "a device made after the baseline copies conf.default"
step "node: bridge-nf-call-iptables=$(sysctl_in $NODE net.bridge.bridge-nf-call-iptables)"
want $NODE net.bridge.bridge-nf-call-iptables 1 "the baseline"
reaches $NODE $INET_UP || fail "the node cannot reach the internet: the world is broken"
reaches $NODE $LAN_IP || fail "the node cannot reach the lan: the world is broken"
! reaches $INET $LAN_IP || fail "the node forwarded inet -> lan before rcon ran (ip_forward inherited?)"
step "before rcon: the node does not forward (inet -> lan unanswered)"

step "rcon: a bridge network and an --internal one in the node"
out=$(rcon_in $NODE network create --subnet 10.10.0.0/24 front 2>&1) || fail "network create front: $out"
out=$(rcon_in $NODE network create --subnet 10.11.0.0/24 --internal vault 2>&1) || fail "network create vault: $out"
want $NODE net.ipv4.ip_forward 1 "rcon turns forwarding on for a bridge network"
want $NODE net.ipv4.conf.all.rp_filter 0 "rcon has no business with rp_filter"
want $NODE net.ipv4.conf.all.route_localnet 0 "route_localnet is per device, and only for a 127.0.0.1 port"
want $NODE net.ipv4.conf.default.route_localnet 0 "route_localnet is per device, and only for a 127.0.0.1 port"
rec=$(cat /tmp/$NODE/lib/forwarding.json 2>/dev/null)
step "forwarding.json: $(echo "$rec" | tr -d ' \n')"
echo "$rec" | tr -d ' \n' | grep -q '"previous":"0"' || fail "forwarding.json does not record 0 as the value to restore: $rec"

for p in p1 p2; do
	out=$(rcon_in $NODE netns add $p 2>&1) || fail "netns add $p: $out"
	in_p $p $IP link set lo up
done
out=$(rcon_in $NODE network attach --netns /tmp/$NODE/netns/p1 front 2>&1) || fail "attach p1 to front: $out"
out=$(rcon_in $NODE network attach --netns /tmp/$NODE/netns/p2 vault 2>&1) || fail "attach p2 to vault: $out"
step "pods: p1 $(p_ip p1) on front, p2 $(p_ip p2) on vault"
# What rcon's own namespaces start with: the root namespace's value, as on any
# host (hence lifecycle.rs compares with a fresh namespace, not with 0).
step "p1 (made by rcon, no baseline): ip_forward=$(in_p p1 cat /proc/sys/net/ipv4/ip_forward)"

in_node $INET nc -ll -p 8080 -e echo from-inet &
srv=$!
i=0
until in_node $INET netstat -tln | grep -q ':8080 '; do
	i=$((i + 1))
	[ $i -lt 50 ] || fail "the listener in inet did not start"
	sleep 0.1
done
got=$(in_p p1 timeout 10 nc -w 3 $INET_UP 8080 </dev/null)
[ "$got" = from-inet ] || fail "p1 on front did not reach the internet through masquerade (got '$got')"
step "p1 -> inet:8080 answered (inet has no route to 10.10.0.0/24: masqueraded)"
if command -v conntrack >/dev/null; then
	in_node $NODE conntrack -L -p tcp --dport 8080 2>/dev/null | sed 's/^/  node conntrack: /'
fi
got=$(in_p p2 timeout 10 nc -w 3 $INET_UP 8080 </dev/null 2>/dev/null)
[ -z "$got" ] || fail "p2 on the internal network vault reached the internet"
in_p p2 ping -c 1 -W 2 $INET_UP >/dev/null 2>&1 && fail "p2 on the internal network vault pinged the internet"
in_p p2 ping -c 1 -W 2 10.11.0.1 >/dev/null 2>&1 || fail "p2 cannot reach its gateway"
step "p2 on vault: gateway yes, internet no"
kill $srv 2>/dev/null
wait $srv 2>/dev/null

step "teardown: the last network takes forwarding with it"
for p in p1 p2; do
	out=$(rcon_in $NODE netns delete $p 2>&1) || fail "netns delete $p: $out"
done
for net in front vault; do
	out=$(rcon_in $NODE network rm --force $net 2>&1) || fail "network rm $net: $out"
done
want $NODE net.ipv4.ip_forward 0 "put back to the baseline's 0 when the last network went"
[ ! -e /tmp/$NODE/lib/forwarding.json ] || fail "forwarding.json left"
! reaches $INET $LAN_IP || fail "the node still forwards inet -> lan after rcon's networks went"
left=$(in_node $NODE $IP -o link | grep -c 'rcon-')
[ "$left" -eq 0 ] || fail "rcon- links left in the node: $(in_node $NODE $IP -o link)"
want $NODE net.ipv4.conf.all.rp_filter 0 "untouched"
for n in $NODE $INET $LAN; do
	$IP netns del "$n"
done
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || fail "the VM's root namespace's ip_forward changed"
step "ok"
