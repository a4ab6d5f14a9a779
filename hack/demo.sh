#!/usr/bin/env bash
# What rcon is for, in seven steps, each with one line of explanation and the
# real output of real commands; every step checks its result and the demo
# stops loudly at the first that fails.
#
#   1. two containers on the default bridge ping each other
#   2. a container reaches an "outside" namespace, masqueraded as its node
#   3. -p 8080:80 serves busybox httpd to the outside
#   4. a pod's two containers share 127.0.0.1
#   5. ip netns sees rcon's namespaces
#   6. two nodes: pods on different nodes talk over VXLAN
#   7. teardown and rcon gc leave nothing behind
#
#   hack/demo.sh      (as root; `make demo` builds rcon and the busybox image first)
#
# Nothing here touches the machine's own network namespace (TESTING.md). The
# demo builds its own world: namespaces node1 and node2 (two "hosts", each
# running its own rcon through `nsenter --net`, with private state and data
# roots under a temp dir), outside (plays the internet, behind node1's uplink)
# and underlay (a bridge joining the nodes). Every packet stays in them.
# The whole demo runs in a mount namespace of its own whose /run/netns is a
# fresh tmpfs: `ip netns` there lists only the demo's namespaces, node1's rcon
# keeps its namespaces there (its --netns-dir is that /run/netns), and none of
# it is visible to, or left in, the machine's /run/netns. An exit trap removes
# containers, pods, processes, namespaces and mounts on success and failure.
# shellcheck disable=SC2016 # single quotes: expanded by the shell in the container or by socat
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)
RCON=${RCON:-$repo/target/release/rcon}
IMAGE=$repo/hack/.cache/busybox-oci
# Where `ip netns` keeps its names (/var/run/netns), as mountinfo spells it.
NETNS_RUN=$(readlink -f /var/run)/netns

die() {
	echo "demo: $*" >&2
	exit 1
}

# --- into a private mount namespace -------------------------------------------
if [[ ${RCON_DEMO_INNER:-} != 1 ]]; then
	[[ $(id -u) -eq 0 ]] || die "needs root (namespaces, veths, bridges, firewall rules); try: sudo make demo"
	[[ -x $RCON ]] || die "no rcon binary at $RCON (cargo build --release --bin rcon; make demo does it)"
	[[ -f $IMAGE/index.json ]] || die "no busybox image at $IMAGE (hack/mkimage.sh; make demo does it)"
	for tool in ip nft jq nsenter unshare socat tcpdump busybox; do
		command -v "$tool" >/dev/null || die "$tool not found (hack/install-deps.sh; make demo does it)"
	done
	# The mount point must exist in the shared filesystem; an empty dir is
	# what `ip netns add` would make there anyway.
	mkdir -p "$NETNS_RUN"
	RCON_DEMO_INNER=1 exec unshare --mount --propagation private -- "$self" "$@"
fi
# The mounts this mount namespace started with (copies of the machine's):
# cleanup leaves alone the namespaces that those name.
inherited_mounts=" $(awk '{printf "%s ", $1}' /proc/self/mountinfo)"
mount -t tmpfs -o mode=0755,size=1m rcon-demo-netns "$NETNS_RUN"

# --- narration ----------------------------------------------------------------
if [[ -t 1 ]]; then
	B=$'\033[1m' D=$'\033[2m' G=$'\033[32m' P=$'\033[0m'
else
	B='' D='' G='' P=''
fi
step=0
# step TITLE EXPLANATION: a heading and the step's one line of explanation.
step() {
	step=$((step + 1))
	printf '\n%s== %d. %s%s\n%s%s%s\n' "$B" "$step" "$1" "$P" "$D" "$2" "$P"
}
# on NODE CMD...: show `[NODE] $ CMD`, run CMD in NODE's netns (with that
# node's rcon state, when CMD is rcon), and show its output (stdout and
# stderr), which is also kept in OUT for the checks.
OUT=''
on() {
	local node=$1
	shift
	printf '%s[%s]%s $ %s\n' "$B" "$node" "$P" "$(quoted "$@")"
	OUT=$(in_ns "$node" "$@" 2>&1) || {
		printf '%s\n' "$OUT"
		fail "the command above failed"
	}
	[[ -z $OUT ]] || printf '%s\n' "$OUT" | sed 's/^/  /'
}
# quoted ARG...: the args as one would type them (single quotes where needed).
quoted() {
	local a out=''
	for a; do
		if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
			out+=" $a"
		else
			out+=" '${a//\'/\'\\\'\'}'"
		fi
	done
	printf '%s' "${out# }"
}
# in_ns NODE CMD...: CMD in NODE's netns, quietly; node1 and node2 get their
# own rcon state roots.
in_ns() {
	local node=$1
	shift
	[[ $1 == rcon ]] && set -- "$RCON" "${@:2}"
	case $node in
	node1 | node2)
		RCON_ROOT=$WORLD/$node/run RCON_DATA_ROOT=$WORLD/$node/lib RCON_NETNS_DIR=$(netns_dir "$node") \
			nsenter --net="$NETNS_RUN/$node" -- "$@"
		;;
	*) nsenter --net="$NETNS_RUN/$node" -- "$@" ;;
	esac
}
netns_dir() { if [[ $1 == node1 ]]; then echo "$NETNS_RUN"; else echo "$WORLD/$1/netns"; fi; }
r1() { in_ns node1 rcon "$@"; }
r2() { in_ns node2 rcon "$@"; }
ok() { printf '%s   ok: %s%s\n' "$G" "$*" "$P"; }
fail() {
	echo "demo: FAILED at step $step: $*" >&2
	exit 1
}
# retry SECS CMD...: run CMD every 0.1 s until it succeeds or SECS pass.
retry() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}
# ip_of NODE NAME: the first address of a container (inspect) or pod (pod inspect).
ip_of() {
	local j
	j=$(in_ns "$1" rcon inspect "$2" 2>/dev/null) || j=$(in_ns "$1" rcon pod inspect "$2")
	jq -r '(.networks // .endpoints)[0] | (.ip // .address // .cidr) | split("/")[0]' <<<"$j"
}

# --- the world and its cleanup ------------------------------------------------
WORLD=$(mktemp -d /tmp/rcon-demo.XXXXXX)
bg_pids=()
cleanup() {
	local rc=$? node p f nsfs mine
	trap - EXIT INT TERM
	set +e
	for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
	for node in node1 node2; do
		[[ -e $NETNS_RUN/$node && -d $WORLD/$node ]] || continue
		for p in $(in_ns "$node" rcon pod ls 2>/dev/null | awk 'NR > 1 {print $2}'); do
			in_ns "$node" rcon pod rm -f "$p" >/dev/null 2>&1
		done
		for f in "$WORLD/$node/run"/*; do
			[[ -e $f ]] && in_ns "$node" rcon rm -f "${f##*/}" >/dev/null 2>&1
			[[ -e $f ]] && in_ns "$node" rcon delete --force "${f##*/}" >/dev/null 2>&1
		done
		in_ns "$node" rcon cluster reset -f >/dev/null 2>&1
	done
	# Whatever is still running goes now: every process in this mount
	# namespace but this shell (only the demo's own are here), and every
	# process in a network namespace that the demo mounted.
	mine=$(readlink /proc/self/ns/mnt)
	nsfs=$(awk -v old="$inherited_mounts" '/ - nsfs / && !index(old, " " $1 " ") {print $4}' /proc/self/mountinfo | sort -u)
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" ]] && continue
		if [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$mine" ]] ||
			{ [[ -n $nsfs ]] && grep -qxF "$(readlink "$p/ns/net" 2>/dev/null)" <<<"$nsfs"; }; then
			kill -9 "${p#/proc/}" 2>/dev/null
		fi
	done
	for f in "$NETNS_RUN"/*; do [[ -e $f ]] && ip netns delete "${f##*/}" 2>/dev/null; done
	awk -v w="$WORLD" -v n="$NETNS_RUN" '$5 == n || index($5, w "/") == 1 || index($5, n "/") == 1 {print $5}' \
		/proc/self/mountinfo | sort -ru | while read -r m; do umount -l "$(printf '%b' "$m")" 2>/dev/null; done
	rm -rf --one-file-system "$WORLD" || echo "demo: could not remove $WORLD" >&2
	if ((rc == 0)); then
		printf '\n%s== done%s: every container, pod, namespace and mount of the demo is gone (%d s)\n' "$B" "$P" "$SECONDS"
	else
		printf '\ndemo: failed (exit %d); the world was cleaned up anyway\n' "$rc" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "rcon demo: $("$RCON" --version); state under $WORLD"
printf '%sthe world: namespaces node1, node2 (each with its own rcon), outside (the internet), underlay (a bridge)%s\n' "$D" "$P"
for ns in node1 node2 outside underlay; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
mkdir -p "$WORLD/node1" "$WORLD/node2/netns"
# node1's uplink to the outside: 203.0.113.2 -> 203.0.113.1 (the default route).
ip link add up0 netns node1 type veth peer name up1 netns outside
ip -n node1 addr add 203.0.113.2/24 dev up0
ip -n node1 link set up0 up
ip -n node1 route add default via 203.0.113.1
ip -n outside addr add 203.0.113.1/24 dev up1
ip -n outside link set up1 up
# The underlay: bridge ul in its own namespace; node K is 192.168.77.K on u0.
ip -n underlay link add ul type bridge
ip -n underlay link set ul up
for k in 1 2; do
	ip link add u0 netns "node$k" type veth peer name p$k netns underlay
	ip -n underlay link set p$k master ul up
	ip -n "node$k" addr add "192.168.77.$k/24" dev u0
	ip -n "node$k" link set u0 up
done
r1 image import "$IMAGE" busybox >/dev/null
r2 image import "$IMAGE" busybox >/dev/null

# --- 1 ------------------------------------------------------------------------
step "Two containers on the default bridge ping each other" \
	"With no network flag a container joins the default network \`bridge\` (rcon0, made on first use), like docker0."
on node1 rcon run -d --name a busybox sleep 600
A=$(ip_of node1 a)
on node1 rcon run --rm --name b busybox ping -c 2 -w 5 "$A"
[[ $OUT == *" 0% packet loss"* ]] || fail "b did not reach a ($A)"
ok "b reached a at $A"

# --- 2 ------------------------------------------------------------------------
step "A container reaches the outside, masqueraded as its node" \
	"The outside (203.0.113.1, behind node1's uplink) runs a listener that answers with the source address it sees."
nsenter --net="$NETNS_RUN/outside" socat TCP-LISTEN:8080,reuseaddr,fork 'SYSTEM:echo outside sees $SOCAT_PEERADDR' &
bg_pids+=($!)
retry 5 in_ns outside sh -c 'ss -ltn | grep -q ":8080 "' || fail "the outside's listener did not start"
on node1 rcon run --rm busybox sh -c 'ip -4 addr show eth0 | grep -o "inet [0-9.]*"; nc -w 3 203.0.113.1 8080'
[[ $OUT == *"outside sees 203.0.113.2"* ]] || fail "the outside did not see node1's address 203.0.113.2"
ME=$(sed -n 's/^inet //p' <<<"$OUT")
[[ $ME == 172.17.* ]] || fail "the container's own address is '$ME', not on the default bridge"
ok "the outside saw 203.0.113.2, node1's uplink address, not the container's $ME"

# --- 3 ------------------------------------------------------------------------
step "A published port: -p 8080:80 serves busybox httpd to the outside" \
	"The outside fetches http://203.0.113.2:8080/ (node1's address) and rcon's DNAT hands it to the container's port 80."
on node1 rcon run -d --name web -p 8080:80 busybox sh -c \
	'mkdir -p /www && echo "hello from container web" >/www/index.html && exec httpd -f -p 80 -h /www'
on node1 rcon port web
retry 5 in_ns outside timeout 2 busybox wget -q -O /dev/null http://203.0.113.2:8080/ || fail "nothing answers on 203.0.113.2:8080"
on outside busybox wget -q -O- http://203.0.113.2:8080/
[[ $OUT == "hello from container web" ]] || fail "the outside got '$OUT' from 203.0.113.2:8080"
ok "the outside got the container's page through node1:8080"

# --- 4 ------------------------------------------------------------------------
step "A pod: two containers share one network namespace, and so 127.0.0.1" \
	"rcon pod create makes the sandbox (netns, pause process, one address); run --pod joins it, the Kubernetes way."
on node1 rcon pod create --name api --network bridge
on node1 rcon run -d --pod api --name api-srv busybox sh -c \
	'mkdir -p /www && echo "hello over the pod'"'"'s loopback" >/www/index.html && exec httpd -f -p 127.0.0.1:80 -h /www'
retry 5 in_ns api timeout 2 busybox wget -q -O /dev/null http://127.0.0.1/ || fail "the pod's server did not start"
on node1 rcon run --rm --pod api busybox wget -q -O- http://127.0.0.1/
[[ $OUT == "hello over the pod's loopback" ]] || fail "the second container got '$OUT' from 127.0.0.1"
on node1 rcon pod ls
ok "the second container fetched the first one's 127.0.0.1:80"

# --- 5 ------------------------------------------------------------------------
step "ip netns sees rcon's namespaces" \
	"A pod's netns is a named namespace on ip netns's own contract (a bind mount in /run/netns), so iproute2 lists and enters it."
on node1 ip netns list
grep -qx 'api.*' <<<"$OUT" || fail "ip netns does not list the pod api"
API=$(ip_of node1 api)
on node1 ip netns exec api ip -br addr show eth0
[[ $OUT == *" $API/"* ]] || fail "ip netns exec api does not show the pod's address $API"
ok "ip netns lists the pod api and enters it: eth0 has the pod's address $API"

# --- 6 ------------------------------------------------------------------------
step "Two nodes: pods on different nodes talk over VXLAN" \
	"node1 is set up by hand (cluster init, node add), node2 from a file (cluster apply); pods then reach each other by their own addresses."
on node1 rcon cluster init --cidr 10.244.0.0/16 --node-subnet 10.244.1.0/24 --backend vxlan --underlay u0
on node1 rcon node add node2 --underlay-ip 192.168.77.2 --subnet 10.244.2.0/24
cat >"$WORLD/node2/cluster.toml" <<'EOF'
[cluster]
cidr = "10.244.0.0/16"
node_subnet = "10.244.2.0/24"
backend = "vxlan"
underlay = "u0"

[[nodes]]
name = "node1"
underlay_ip = "192.168.77.1"
subnet = "10.244.1.0/24"
EOF
on node2 rcon cluster apply "$WORLD/node2/cluster.toml"
on node2 ip route show 10.244.1.0/24
# The server pod on node1 logs each client's address (httpd -vv).
on node1 rcon pod create --name front --network cluster
on node1 rcon run -d --pod front --name front-srv busybox sh -c \
	'mkdir -p /www && echo "hello from a pod on node1" >/www/index.html && exec httpd -f -vv -p 0.0.0.0:80 -h /www'
FRONT=$(ip_of node1 front)
retry 5 sh -c "ss -N front -ltn | grep -q ':80 '" || fail "front's server did not start"
on node2 rcon pod create --name back --network cluster
BACK=$(ip_of node2 back)
# A capture on the underlay bridge: what crosses between the nodes.
in_ns underlay tcpdump -l -nn -c 2 -i ul udp port 4789 >"$WORLD/vxlan.txt" 2>"$WORLD/tcpdump.err" &
bg_pids+=($!)
retry 5 grep -q 'listening on' "$WORLD/tcpdump.err" || fail "tcpdump did not start"
on node2 rcon run --rm --pod back busybox wget -q -O- "http://$FRONT/"
[[ $OUT == "hello from a pod on node1" ]] || fail "pod back ($BACK on node2) got '$OUT' from pod front ($FRONT on node1)"
on node1 rcon logs front-srv
[[ $OUT == *"$BACK:"*"url:/"* ]] || fail "front's server did not see pod back's own address $BACK"
wait "${bg_pids[-1]}" || true
unset 'bg_pids[-1]'
printf '%s[underlay]%s $ tcpdump -nn -c 2 -i ul udp port 4789\n' "$B" "$P"
sed 's/^/  /' "$WORLD/vxlan.txt"
grep -q "VXLAN.*vni 1" "$WORLD/vxlan.txt" || fail "the capture on the underlay shows no VXLAN"
grep -q "$BACK" "$WORLD/vxlan.txt" || fail "the VXLAN packets do not carry pod back's address $BACK"
ok "back ($BACK, node2) reached front ($FRONT, node1) in VXLAN (vni 1) over the underlay, seen by its own address: no NAT"

# --- 7 ------------------------------------------------------------------------
step "rcon gc: after teardown, nothing is left in the node" \
	"A run SIGKILLed midway (RCON_FAULT) leaves a half-made container; rm, pod rm, cluster reset, gc and network rm leave the node bare."
in_ns node1 env RCON_FAULT=attach:wired "$RCON" run -d --name crashed busybox sleep 600 >/dev/null 2>&1 &&
	fail "the fault injection did not kill rcon"
printf '%s[node1]%s $ RCON_FAULT=attach:wired rcon run -d --name crashed busybox sleep 600   # killed midway\n' "$B" "$P"
on node1 rcon ps
[[ $OUT == *" crashed "* ]] || fail "the killed run left no container behind"
on node1 ip -br link
on node1 nft list tables
on node1 ip netns list
on node1 rcon rm -f a web
on node1 rcon pod rm -f api front
on node1 rcon cluster reset -f
on node1 rcon gc
on node1 rcon network rm bridge
on node1 ip -br link
links=$(in_ns node1 ip -br link | awk '{print $1}' | sort | tr '\n' ' ')
[[ $links == "lo u0@if"* && $links == *"up0@if"* && $(wc -w <<<"$links") -eq 3 ]] ||
	fail "node1 has links other than lo, u0 and up0: $links"
on node1 nft list tables
[[ -z $OUT ]] || fail "node1 still has nft tables: $OUT"
on node1 ip netns list
[[ $(awk '{print $1}' <<<"$OUT" | sort | tr '\n' ' ') == "node1 node2 outside underlay " ]] || fail "namespaces left: $OUT"
[[ -z $(ls "$WORLD/node1/run") ]] || fail "container state left: $(ls "$WORLD/node1/run")"
ok "node1 has only lo and its two uplinks, no nft table, no namespace but the demo's own"
