#!/usr/bin/env bash
# The etcd control plane (issue 18): how fast a lease put in etcd becomes a
# route on every node, and what the node agent costs with a thousand peers.
# Each beside a naive agent built from the kernel's own tools, in the same
# run: `etcdctl watch --prefix` piped into a shell loop that runs `ip neigh
# replace`, `bridge fdb replace` and `ip route replace` per event (what
# rcon's vxlan backend programs per peer, route last), on the same nodes.
# Writes a section of docs/PERFORMANCE.md. Figures only, never an assertion.
#
#   hack/bench-etcd.sh                 (make bench installs deps and builds first)
#   hack/bench-etcd.sh --quick         5 nodes, 10 puts, 200 leases, 5 s idle;
#                                      writes only the cache unless BENCH_OUT is set
#   BENCH_ETCD_NODES=20                nodes in the propagation world
#   BENCH_ETCD_PUTS=50                 timed puts (and deletes) per agent kind
#   BENCH_ETCD_LEASES=1000             leases put at once in the scale world
#   BENCH_ETCD_IDLE=30                 seconds of the idle window
#   BENCH_OUT=/tmp/p.md                write the section somewhere else
#   RCON=PATH RCON_REV=REV             another rcon binary, and what to call it
#
# The world: an underlay namespace holding a bridge (`ip netns add
# rcon-betcd-PID-u`), an etcd namespace (-e, 192.168.77.254/24) where
# Debian's etcd runs (data dir under /tmp/rcon-betcd-PID, the one member
# of its cluster), and node namespaces (-nK, 192.168.77.K/24), each with a
# veth u0 on the bridge and its own rcon (private RCON_ROOT, RCON_DATA_ROOT,
# RCON_NETNS_DIR), run with nsenter --net. The machine's root network
# namespace is never touched. All of it is removed at the end and on
# failure (`cluster reset -f` on each node, every process of the world
# killed, the namespaces deleted).
#
# 1. Propagation. `rcon cluster config set` once (10.244.0.0/16, vxlan),
#    then on each node `rcon cluster init --store etcd --underlay u0
#    --node-subnet 10.244.K.0/24` and `rcon cluster agent` in the
#    background, waited for until it prints `watching`. Each node also gets
#    a VXLAN device of its own for the naive agent (nv0, VNI 2) and that
#    agent, watching another prefix (/naive/network/subnets/). A driver in
#    the etcd namespace (python3, one kept-alive HTTP connection to etcd's
#    JSON gateway: the put etcdctl makes, without etcdctl's process start
#    and connect in the figure) puts a lease for a fake node, attached to
#    an etcd lease of 24 h, then deletes it, for each kind in turn (their
#    order alternating), waiting each time until every node has the
#    change. The start is the driver's clock just before it sends the put;
#    the end is when `ip -ts monitor route`, one per node, sees that
#    node's route to the fake subnet come (or go). ip stamps an event when
#    it reads it, so a late wake-up of the monitor counts against the
#    agent: the figures are upper bounds.
# 2. Scale. The propagation nodes go; one fresh node (-s) under its own
#    prefix (/bench/scale, 10.0.0.0/8) runs the agent, and the naive agent
#    on nv0 under /bench/naive/. LEASES leases (distinct public IPs and
#    VTEP MACs) are put at once: transactions of 100 puts (etcd allows 128
#    per transaction), sent back to back. The end is when the node's last
#    route comes (`ip -ts monitor route`), and when a poll every 50 ms
#    finds every route, FDB and neighbour entry (`ip route`, `bridge fdb`,
#    `ip neigh` on the device). Then the agent's VmRSS and VmHWM
#    (/proc/PID/status), and over IDLE seconds with no change its context
#    switches (voluntary + nonvoluntary, summed over /proc/PID/task/*) and
#    CPU time (utime + stime); its lease's TTL is 24 h, renewed every 8 h,
#    so no renewal falls in the window. The naive agent likewise (etcdctl
#    and its shell loop summed), after the agent's window. Then the leases
#    go in one delete of the range, timed the same way.
#
# Raw figures go to hack/.cache/bench/etcd/ (prop-KIND-OP.ms: one node's
# latency of one put or delete a line; prop-put.ms: etcd's own reply time
# to each put; scale-*.txt: the scale run's figures as NAME=VALUE), the
# section to hack/.cache/bench/etcd.md.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

RCON=${RCON:-$repo/target/release/rcon}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL=${ETCDCTL:-/usr/bin/etcdctl}
NETNS_RUN=/var/run/netns
UL=192.168.77 # the underlay: node K is $UL.K/24, etcd $UL.254
EP=http://$UL.254:2379
PROP_PREFIX=/coreos.com/network
NAIVE_PROP=/naive/network/subnets/
SCALE_PREFIX=/bench/scale
NAIVE_SCALE=/bench/naive/subnets/

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh"

bench_start bench-etcd "$@"
NODES=${BENCH_ETCD_NODES:-$([[ -n $quick ]] && echo 5 || echo 20)}
PUTS=${BENCH_ETCD_PUTS:-$([[ -n $quick ]] && echo 10 || echo 50)}
LEASES=${BENCH_ETCD_LEASES:-$([[ -n $quick ]] && echo 200 || echo 1000)}
IDLE=${BENCH_ETCD_IDLE:-$([[ -n $quick ]] && echo 5 || echo 30)}
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/etcd
BENCH_TAG=bench-etcd

for v in "$NODES" "$PUTS" "$LEASES" "$IDLE"; do
	if ! [[ $v =~ ^[1-9][0-9]*$ ]]; then
		echo "bench-etcd: BENCH_ETCD_NODES, _PUTS, _LEASES and _IDLE take a positive number, not '$v'" >&2
		exit 2
	fi
done
((NODES <= 200)) || {
	echo "bench-etcd: BENCH_ETCD_NODES is at most 200 (one underlay /24), not $NODES" >&2
	exit 2
}
((LEASES <= 25000)) || { # the fake subnets are 10.100.0.0/24 to 10.197.167.0/24
	echo "bench-etcd: BENCH_ETCD_LEASES is at most 25000, not $LEASES" >&2
	exit 2
}
bench_need ip bridge nsenter python3 "$ETCD" "$ETCDCTL"
bench_need_rcon cluster agent

# --- the bench world and its cleanup ------------------------------------------
PREFIX=rcon-betcd
WORLD=/tmp/$PREFIX-$$

# world_stop_procs PID: `cluster reset -f` on each node run PID left (its
# lease revoked while etcd still runs), then every process of its world.
world_stop_procs() {
	local w=/tmp/$PREFIX-$1 bin d node
	bin=$(world_rcon "$1")
	for d in "$w"/n*; do
		[[ -d $d/lib ]] || continue
		node=$NETNS_RUN/$PREFIX-$1-${d##*/}
		[[ -e $node ]] || continue
		RCON_ROOT=$d/run RCON_DATA_ROOT=$d/lib RCON_NETNS_DIR=$d/netns \
			timeout 20 nsenter --net="$node" "$bin" cluster reset -f >/dev/null 2>&1 || true
	done
	kill_world_procs "$1"
}

bench_world_up
bench_pin_rcon

# node_dir NAME: node NAME's rcon dirs; ns NAME: its netns file.
node_dir() { echo "$WORLD/n$1"; }
ns() { echo "$NETNS_RUN/$PREFIX-$$-$1"; }
# in_node NAME CMD...: CMD in node NAME with its rcon dirs.
in_node() {
	local d
	d=$(node_dir "$1")
	nsenter --net="$(ns "n$1")" env RCON_ROOT="$d/run" RCON_DATA_ROOT="$d/lib" RCON_NETNS_DIR="$d/netns" \
		RCON_ETCD_ENDPOINTS="$EP" "${@:2}"
}

# The underlay, etcd's namespace, and etcd.
ip netns add "$PREFIX-$$-u"
netns_baseline "$PREFIX-$$-u"
ip -n "$PREFIX-$$-u" link set lo up
ip netns exec "$PREFIX-$$-u" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
	net.bridge.bridge-nf-call-arptables=0
ip -n "$PREFIX-$$-u" link add ul type bridge
ip -n "$PREFIX-$$-u" link set ul up
# plug NSNAME K: a veth u0 in the netns NSNAME on the bridge, $UL.K/24.
plug() {
	ip link add u0 netns "$1" type veth peer name "p$2" netns "$PREFIX-$$-u"
	ip -n "$PREFIX-$$-u" link set "p$2" master ul up
	ip -n "$1" addr add "$UL.$2/24" dev u0
	ip -n "$1" link set u0 up
	ip -n "$1" link set lo up
}
ip netns add "$PREFIX-$$-e"
netns_baseline "$PREFIX-$$-e"
plug "$PREFIX-$$-e" 254
mkdir -p "$WORLD/etcd"
nsenter --net="$(ns e)" "$ETCD" --name e --data-dir "$WORLD/etcd/data" \
	--listen-client-urls "$EP,http://127.0.0.1:2379" --advertise-client-urls "$EP" \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster e=http://127.0.0.1:2380 >"$WORLD/etcd/log" 2>&1 &
etcd_pid=$!
for ((k = 0; k < 100; k++)); do
	nsenter --net="$(ns e)" env ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" endpoint health >/dev/null 2>&1 && break
	kill -0 "$etcd_pid" 2>/dev/null || {
		echo "bench-etcd: etcd exited:" >&2
		tail -5 "$WORLD/etcd/log" >&2
		exit 1
	}
	sleep 0.1
done
((k < 100)) || {
	echo "bench-etcd: etcd did not become healthy in 10 s" >&2
	exit 1
}

# The driver: puts and deletes through etcd's JSON gateway on one kept-alive
# connection, timed with the same clock as the monitors' stamps.
cat >"$WORLD/driver.py" <<'EOF'
import base64, datetime, http.client, json, os, random, re, sys, time

def b64(s):
    return base64.b64encode(s.encode()).decode()

class Etcd:
    def __init__(self, host):
        self.c = http.client.HTTPConnection(host, 2379, timeout=30)
    def call(self, path, body):
        self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.c.getresponse()
        d = r.read()
        if r.status != 200:
            sys.exit("driver: etcd %s: %d %s" % (path, r.status, d[:300]))
        return json.loads(d)
    def grant(self, ttl):
        return self.call("/v3/lease/grant", {"TTL": ttl})["ID"]
    def put(self, key, value, lease):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value), "lease": lease})
    def delete(self, key, end=None):
        body = {"key": b64(key)}
        if end:
            body["range_end"] = b64(end)
        return int(self.call("/v3/kv/deleterange", body).get("deleted", 0))
    def txn_puts(self, kvs, lease):
        ops = [{"request_put": {"key": b64(k), "value": b64(v), "lease": lease}} for k, v in kvs]
        self.call("/v3/kv/txn", {"success": ops})

def lease_value(ip, mac):
    return json.dumps({"PublicIP": ip, "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": mac}},
                      separators=(",", ":"))

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (.*)$")

def stamp(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()

def events(path):
    """(time, added?, subnet) of each route event in a monitor log."""
    out = []
    with open(path) as f:
        for line in f:
            m = STAMP.match(line)
            if not m:
                continue
            rest = m.group(2)
            gone = rest.startswith("Deleted ")
            out.append((stamp(m.group(1)), not gone, rest.split()[1 if gone else 0]))
    return out

class Tail:
    """Counts of route events per (subnet, added?) in a growing monitor log."""
    def __init__(self, path):
        self.path, self.off, self.part, self.n = path, 0, "", {}
    def count(self, subnet, added):
        with open(self.path) as f:
            f.seek(self.off)
            data = f.read()
            self.off = f.tell()
        lines = (self.part + data).split("\n")
        self.part = lines.pop()
        for line in lines:
            m = STAMP.match(line)
            if m:
                rest = m.group(2)
                gone = rest.startswith("Deleted ")
                k = (rest.split()[1 if gone else 0], not gone)
                self.n[k] = self.n.get(k, 0) + 1
        return self.n.get((subnet, added), 0)

def prop(host, logdir, nodes, puts, warm, raw):
    """Put and delete a fake lease per kind, warm + puts times; wait for every node's route event."""
    e = Etcd(host)
    lease = e.grant(86400)
    kinds = {
        "rcon": ("/coreos.com/network/subnets/10.244.200.0-24", "10.244.200.0/24"),
        "naive": ("/naive/network/subnets/10.245.200.0-24", "10.245.200.0/24"),
    }
    value = lease_value("192.168.77.250", "0e:aa:bb:cc:dd:ee")
    tails = [Tail(os.path.join(logdir, "mon-n%d.log" % k)) for k in range(1, nodes + 1)]
    steps, put_ms = [], []
    for i in range(warm + puts):
        order = ["rcon", "naive"] if i % 2 == 0 else ["naive", "rcon"]
        for kind in order:
            key, subnet = kinds[kind]
            for added in (True, False):
                t0 = time.time()
                if added:
                    e.put(key, value, lease)
                else:
                    e.delete(key)
                t1 = time.time()
                if added and i >= warm:
                    put_ms.append((t1 - t0) * 1000)
                deadline = time.time() + 10
                while any(t.count(subnet, added) < i + 1 for t in tails):
                    if time.time() > deadline:
                        sys.exit("driver: %s %s %s: not on every node after 10 s" % (kind, "put" if added else "delete", subnet))
                    time.sleep(0.005)
                steps.append((kind, added, subnet, t0, i >= warm))
                time.sleep(random.uniform(0.03, 0.08))
    out = {}
    for k in range(1, nodes + 1):
        ev = events(os.path.join(logdir, "mon-n%d.log" % k))
        for kind, added, subnet, t0, counted in steps:
            if not counted:
                continue
            t = next(t for t, a, s in ev if s == subnet and a == added and t >= t0)
            out.setdefault((kind, added), []).append((t - t0) * 1000)
    for (kind, added), v in out.items():
        with open(os.path.join(raw, "prop-%s-%s.ms" % (kind, "add" if added else "del")), "w") as f:
            f.write("".join("%.3f\n" % x for x in v))
    with open(os.path.join(raw, "prop-put.ms"), "w") as f:
        f.write("".join("%.3f\n" % x for x in put_ms))

def scale_leases(n):
    for i in range(n):
        name = "10.%d.%d.0-24" % (100 + i // 256, i % 256)
        yield name, lease_value("198.18.%d.%d" % (i // 200, i % 200 + 1), "0e:aa:%02x:%02x:%02x:01" % (i >> 16 & 255, i >> 8 & 255, i & 255))

def scale_put(host, prefix, n):
    """n leases in transactions of 100, back to back; prints the start time."""
    e = Etcd(host)
    lease = e.grant(86400)
    kvs = [(prefix + name, v) for name, v in scale_leases(n)]
    t0 = time.time()
    for j in range(0, n, 100):
        e.txn_puts(kvs[j:j + 100], lease)
    print("%.6f %.6f" % (t0, time.time()))

def scale_del(host, prefix):
    """The fake leases (10.100.* to 10.199.*) in one delete of their key
    range, which leaves the node's own (10.1.0.0-24) alone."""
    e = Etcd(host)
    t0 = time.time()
    n = e.delete(prefix + "10.100.", prefix + "10.2")
    print("%.6f %.6f %d" % (t0, time.time(), n))

def last_route(path, t0):
    """The time of the last route event to a fake peer (10.100.0.0/24 and
    up) after t0 in a monitor log, and how many there were."""
    ev = [t for t, a, s in events(path) if t >= t0 and re.match(r"10\.1\d\d\.", s)]
    return ("%.6f" % max(ev) if ev else "", len(ev))

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "prop":
        prop(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    elif mode == "scale-put":
        scale_put(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "scale-del":
        scale_del(sys.argv[2], sys.argv[3])
    elif mode == "last-route":
        print("%s %d" % last_route(sys.argv[2], float(sys.argv[3])))
EOF

# The naive agent: NAIVE_PREFIX DEV. What a hand-rolled flannel-style agent
# does with the kernel's tools: one etcdctl watch, and per event the three
# entries of a vxlan peer (neighbour, FDB, route, as rcon programs them).
# The lease value is parsed by bash itself, not by a jq per event.
cat >"$WORLD/naive.sh" <<'EOF'
#!/bin/bash
prefix=$1 dev=$2
ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" watch --prefix "$prefix" | {
	declare -A mac ip
	while read -r ev && read -r key && read -r val; do
		name=${key##*/} gw=${key##*/}
		gw=${gw%-*}
		subnet=$gw/${name##*-}
		case $ev in
		PUT)
			[[ $val =~ \"PublicIP\":\"([^\"]*)\" ]] && ip[$name]=${BASH_REMATCH[1]}
			[[ $val =~ \"VtepMAC\":\"([^\"]*)\" ]] && mac[$name]=${BASH_REMATCH[1]}
			ip neigh replace "$gw" lladdr "${mac[$name]}" dev "$dev" nud permanent
			bridge fdb replace "${mac[$name]}" dev "$dev" dst "${ip[$name]}" self permanent
			ip route replace "$subnet" via "$gw" dev "$dev" onlink
			;;
		DELETE)
			ip route del "$subnet" dev "$dev"
			bridge fdb del "${mac[$name]}" dev "$dev" dst "${ip[$name]}" self
			ip neigh del "$gw" dev "$dev"
			unset "mac[$name]" "ip[$name]"
			;;
		esac
	done
}
EOF
chmod +x "$WORLD/naive.sh"

# node_up NAME K PREFIX [INIT-FLAGS...]: node NAME at $UL.K, joined to the
# cluster under PREFIX (init flags added), its agent started and waited for;
# a VXLAN device nv0 for the naive agent.
node_up() {
	local name=$1 k=$2 prefix=$3 d
	shift 3
	d=$(node_dir "$name")
	mkdir -p "$d/run" "$d/lib" "$d/netns"
	ip netns add "$PREFIX-$$-n$name"
	netns_baseline "$PREFIX-$$-n$name"
	plug "$PREFIX-$$-n$name" "$k"
	in_node "$name" "$RCON" cluster init --store etcd --etcd-prefix "$prefix" --underlay u0 "$@" >>"$WORLD/init.log"
	ip -n "$PREFIX-$$-n$name" link add nv0 type vxlan id 2 dstport 8473 dev u0 nolearning
	ip -n "$PREFIX-$$-n$name" link set nv0 up
	in_node "$name" "$RCON" cluster agent >"$RAW/agent-n$name.log" 2>&1 &
	echo $! >"$d/agent.pid" # the starting subshell's, until agent_wait
	disown
}
# agent_wait NAME: until node NAME's agent prints `watching` (30 s); then
# its pid (the rcon process in the node, not the subshell that started it)
# to DIR/agent.pid.
agent_wait() {
	local d k p
	d=$(node_dir "$1")
	for ((k = 0; k < 300; k++)); do
		if grep -qs '^watching ' "$RAW/agent-n$1.log"; then
			for p in $(pids_in "$(ns "n$1")"); do
				[[ $(cat "/proc/$p/comm" 2>/dev/null) != rcon ]] || echo "$p" >"$d/agent.pid"
			done
			return 0
		fi
		kill -0 "$(cat "$d/agent.pid")" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench-etcd: node $1's agent is not watching:" >&2
	tail -5 "$RAW/agent-n$1.log" >&2
	exit 1
}
# naive_up NAME PREFIX: the naive agent in node NAME; monitor_up NAME: ip
# -ts monitor route there, into $RAW/mon-nNAME.log.
naive_up() {
	nsenter --net="$(ns "n$1")" env ETCDCTL="$ETCDCTL" EP="$EP" "$WORLD/naive.sh" "$2" nv0 \
		>"$RAW/naive-n$1.log" 2>&1 &
	disown
}
monitor_up() {
	nsenter --net="$(ns "n$1")" env TZ=UTC ip -ts monitor route >"$RAW/mon-n$1.log" 2>&1 &
	disown
}
# node_down NAME: node NAME's processes ended, `cluster reset -f`, the netns gone.
node_down() {
	local d p
	d=$(node_dir "$1")
	for p in $(pids_in "$(ns "n$1")"); do kill "$p" 2>/dev/null || true; done
	in_node "$1" "$RCON" cluster reset -f >/dev/null 2>&1 || true
	for p in $(pids_in "$(ns "n$1")"); do kill -9 "$p" 2>/dev/null || true; done
	unmount_below "$d"
	rm -rf --one-file-system "$d"
	ip netns delete "$PREFIX-$$-n$1"
}
# pids_in NS: the processes in the netns file NS, one a line.
pids_in() {
	local ino p
	ino=$(nsenter --net="$1" readlink /proc/self/ns/net)
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/ns/net" 2>/dev/null) != "$ino" ]] || echo "${p#/proc/}"
	done
}
driver() { nsenter --net="$(ns e)" python3 "$WORLD/driver.py" "$@"; }

# --- 1. propagation ---------------------------------------------------------------
bench_runs_begin
rm -f "$RAW"/*.ms "$RAW"/*.txt "$RAW"/*.log
mkdir -p "$RAW"
# in_node_cfg FLAGS...: `rcon cluster config set` from etcd's namespace
# (private state dirs, though it only writes the key).
in_node_cfg() {
	mkdir -p "$WORLD/cfg/run" "$WORLD/cfg/lib" "$WORLD/cfg/netns"
	nsenter --net="$(ns e)" env RCON_ROOT="$WORLD/cfg/run" RCON_DATA_ROOT="$WORLD/cfg/lib" \
		RCON_NETNS_DIR="$WORLD/cfg/netns" "$RCON" cluster config set --etcd-endpoints "$EP" "$@" >/dev/null
}
in_node_cfg --cidr 10.244.0.0/16 --backend vxlan
echo "bench-etcd: $NODES nodes: init, agent, naive agent"
for ((k = 1; k <= NODES; k++)); do
	node_up "$k" "$k" "$PROP_PREFIX" --node-subnet "10.244.$k.0/24"
	naive_up "$k" "$NAIVE_PROP"
	monitor_up "$k"
done
for ((k = 1; k <= NODES; k++)); do agent_wait "$k"; done
echo "bench-etcd: $PUTS puts and deletes of a lease per kind (2 not counted first), $NODES nodes"
driver prop "$UL.254" "$RAW" "$NODES" "$PUTS" 2 "$RAW"
# For scale: what one `etcdctl put` takes as a process (start, connect, put).
for ((k = 0; k < 10; k++)); do
	a=$EPOCHREALTIME
	nsenter --net="$(ns e)" env ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" put /bench/etcdctl-probe x >/dev/null
	awk -v a="$a" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f\n", (b - a) * 1000}' >>"$RAW/etcdctl-put.ms"
done
agent_rss_prop=$(awk '/^VmRSS/ {print $2}' "/proc/$(cat "$(node_dir 1)/agent.pid")/status")
for ((k = 1; k <= NODES; k++)); do node_down "$k"; done

# --- 2. scale -----------------------------------------------------------------------
in_node_cfg --etcd-prefix "$SCALE_PREFIX" --cidr 10.0.0.0/8 --backend vxlan
node_up s 100 "$SCALE_PREFIX" --node-subnet 10.1.0.0/24
agent_wait s
agent=$(cat "$(node_dir s)/agent.pid")
naive_up s "$NAIVE_SCALE"
monitor_up s
sleep 1 # the naive agent's watch is set up
# naive_pids: the naive agent's processes in node s (etcdctl and its shell).
naive_pids() {
	local p
	for p in $(pids_in "$(ns ns)"); do
		if [[ $(cat "/proc/$p/comm" 2>/dev/null) == etcdctl ]] || grep -qa naive.sh "/proc/$p/cmdline" 2>/dev/null; then echo "$p"; fi
	done
}
# counts DEV: routes, FDB entries and neighbours of the fake peers on DEV in node s.
counts() {
	local n
	n=$(ns ns)
	echo "$(nsenter --net="$n" ip -4 route show dev "$1" | grep -c '^10\.1[0-9][0-9]\.' || true)" \
		"$(nsenter --net="$n" bridge fdb show dev "$1" | grep -c ' dst 198\.18\.' || true)" \
		"$(nsenter --net="$n" ip -4 neigh show dev "$1" | grep -c '^10\.1[0-9][0-9]\.' || true)"
}
# wait_counts DEV N: until DEV has N of each (120 s); prints the time.
wait_counts() {
	local k
	for ((k = 0; k < 2400; k++)); do
		if [[ $(counts "$1") == "$2 $2 $2" ]]; then
			echo "$EPOCHREALTIME"
			return 0
		fi
		sleep 0.05
	done
	echo "bench-etcd: $1 in node s has $(counts "$1") (routes, FDB, neighbours), not $2 each, after 120 s" >&2
	return 1
}
# usage PID...: context switches and CPU ticks summed over PIDs' threads.
usage() {
	local p cs=0 t=0
	for p in "$@"; do
		cs=$((cs + $(awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}' /proc/"$p"/task/*/status)))
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$cs $t"
}
# mem PID...: VmRSS and VmHWM summed, kB.
mem() {
	local p r=0 h=0
	for p in "$@"; do
		r=$((r + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
		h=$((h + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status")))
	done
	echo "$r $h"
}
# scale KIND PREFIX DEV PID...: LEASES leases put, the time until DEV has
# all of them; memory; idle over IDLE s; then the range deleted and timed.
# Figures to $RAW/scale-KIND.txt.
scale() {
	local kind=$1 prefix=$2 dev=$3 t0 t1 tend last n u0 u1 out
	out=$RAW/scale-$kind.txt
	shift 3
	echo "bench-etcd: $LEASES leases at once, $kind"
	read -r t0 t1 < <(driver scale-put "$UL.254" "$prefix" "$LEASES")
	tend=$(wait_counts "$dev" "$LEASES")
	read -r last n < <(python3 "$WORLD/driver.py" last-route "$RAW/mon-ns.log" "$t0")
	{
		echo "put_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) * 1000}')"
		echo "last_route_ms=$(awk -v a="$t0" -v b="$last" 'BEGIN {printf "%.1f", (b - a) * 1000}')"
		echo "route_events=$n"
		echo "all_counted_ms=$(awk -v a="$t0" -v b="$tend" 'BEGIN {printf "%.1f", (b - a) * 1000}')"
		echo "mem_kb=$(mem "$@")"
	} >"$out"
	sleep 2
	u0=$(usage "$@")
	sleep "$IDLE"
	u1=$(usage "$@")
	echo "idle=$(awk -v a="$u0" -v b="$u1" 'BEGIN {split(a, x, " "); split(b, y, " "); print y[1] - x[1], y[2] - x[2]}')" >>"$out"
	read -r t0 t1 n < <(driver scale-del "$UL.254" "$prefix")
	tend=$(wait_counts "$dev" 0)
	read -r last _ < <(python3 "$WORLD/driver.py" last-route "$RAW/mon-ns.log" "$t0")
	{
		echo "deleted=$n"
		echo "del_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) * 1000}')"
		echo "del_last_route_ms=$(awk -v a="$t0" -v b="$last" 'BEGIN {printf "%.1f", (b - a) * 1000}')"
		echo "del_all_counted_ms=$(awk -v a="$t0" -v b="$tend" 'BEGIN {printf "%.1f", (b - a) * 1000}')"
		echo "mem_after_kb=$(mem "$@")"
	} >>"$out"
}
read -ra npids <<<"$(naive_pids | paste -sd' ')"
scale rcon "$SCALE_PREFIX/subnets/" rcon-vx1 "$agent"
scale naive "$NAIVE_SCALE" nv0 "${npids[@]}"
echo "naive_procs=${#npids[@]}" >>"$RAW/scale-naive.txt"
ticks=$(getconf CLK_TCK)
node_down s
kill "$etcd_pid"
wait "$etcd_pid" 2>/dev/null || true
bench_runs_end

# --- the report -------------------------------------------------------------------
# p FILE P: the Pth percentile (nearest rank) of FILE's numbers; max FILE.
p() { if [[ -s $1 ]]; then sort -n "$1" | awk -v p="$2" '{a[NR] = $1} END {printf "%.1f", a[int((p * NR + 99) / 100)]}'; else echo —; fi; }
# sv KIND NAME: a figure of the scale run of KIND.
sv() { sed -n "s/^$2=//p" "$RAW/scale-$1.txt" 2>/dev/null; }
mb() { awk -v k="${1:-}" 'BEGIN {if (k == "") print "—"; else printf "%.1f", k / 1024}'; }
field() { cut -d' ' -f"$2" <<<"$1"; }
cpu_ms() { awk -v t="${1:-}" -v h="$ticks" 'BEGIN {if (t == "") print "—"; else printf "%.0f", t * 1000 / h}'; }
label() { if [[ $1 == rcon ]]; then echo '`rcon cluster agent`'; else echo 'naive: `etcdctl watch --prefix` into a shell loop of `ip`/`bridge`'; fi; }

prop_table() {
	local k
	echo "| agent | put → route: p50 ms | p99 ms | max ms | delete → route gone: p50 ms | p99 ms | max ms |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for k in rcon naive; do
		printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$k")" \
			"$(p "$RAW/prop-$k-add.ms" 50)" "$(p "$RAW/prop-$k-add.ms" 99)" "$(p "$RAW/prop-$k-add.ms" 100)" \
			"$(p "$RAW/prop-$k-del.ms" 50)" "$(p "$RAW/prop-$k-del.ms" 99)" "$(p "$RAW/prop-$k-del.ms" 100)"
	done
}
scale_table() {
	local k m i
	echo "| agent | $LEASES puts sent (ms) | last route in (ms) | all routes, FDB, neighbours counted (ms) | delete: last route out (ms) | all gone, counted (ms) | VmRSS / VmHWM after the puts (MB) | idle $IDLE s: context switches | idle: CPU ms |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for k in rcon naive; do
		m=$(sv "$k" mem_kb) i=$(sv "$k" idle)
		printf '| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' "$(label "$k")" \
			"$(sv "$k" put_ms)" "$(sv "$k" last_route_ms)" "$(sv "$k" all_counted_ms)" \
			"$(sv "$k" del_last_route_ms)" "$(sv "$k" del_all_counted_ms)" \
			"$(mb "$(field "$m" 1)")" "$(mb "$(field "$m" 2)")" "$(field "$i" 1)" "$(cpu_ms "$(field "$i" 2)")"
	done
}
# verdicts: the issue's goals, as this run saw them.
verdicts() {
	local v m i
	v=$(p "$RAW/prop-rcon-add.ms" 99)
	echo "- lease propagation p99 at most 100 ms ($NODES nodes): **$(awk -v v="$v" 'BEGIN {print (v <= 100 ? "met" : "not met")}')** (${v} ms for puts, $(p "$RAW/prop-rcon-del.ms" 99) ms for deletes)."
	m=$(sv rcon mem_kb)
	echo "- agent RSS at most 20 MB with $LEASES peers: **$(awk -v k="$(field "$m" 2)" 'BEGIN {print (k <= 20480 ? "met" : "not met")}')** (VmHWM $(mb "$(field "$m" 2)") MB, VmRSS $(mb "$(field "$m" 1)") MB; with $NODES-node propagation $(mb "$agent_rss_prop") MB)."
	i=$(sv rcon idle)
	echo "- no wake-ups beyond the lease renewals (none due in the window): **$([[ $(field "$i" 1) == 0 ]] && echo met || echo "not met")** ($(field "$i" 1) context switches, $(cpu_ms "$(field "$i" 2)") ms CPU in $IDLE s)."
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
section=$CACHE/etcd.md
{
	cat <<-EOF
		## The etcd control plane: lease propagation and scale

		Generated by [hack/bench-etcd.sh](../hack/bench-etcd.sh) (run by \`make bench\`).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- rcon $rcon_rev (release build of $rcon_built); $("$ETCD" --version | head -1) (Debian, one member, its data dir on $(df --output=fstype /tmp | tail -1)); $(python3 --version)

		What is measured (issue 18's benchmark), each beside a naive agent
		made of the kernel's own tools, in the same run on the same nodes:
		\`etcdctl watch --prefix\` piped into a shell loop that runs \`ip neigh
		replace\`, \`bridge fdb replace\` and \`ip route replace\` per event
		(what rcon's vxlan backend programs per peer, route last; the lease
		value parsed by bash itself, with no jq per event), on a VXLAN
		device of its own (\`nv0\`, VNI 2) and under a prefix of its own.

		How: an underlay bridge in a namespace of its own; etcd in another
		(192.168.77.254); node namespaces on the bridge, each with its own
		rcon (private state dirs, \`nsenter --net\`). \`rcon cluster config
		set --cidr 10.244.0.0/16 --backend vxlan\` once, then on each node
		\`rcon cluster init --store etcd --underlay u0 --node-subnet
		10.244.K.0/24\` and \`rcon cluster agent\` (waited for until it prints
		\`watching\`), and the naive agent. Puts and deletes come from a
		driver in etcd's namespace (python3, one kept-alive HTTP connection
		to etcd's JSON gateway: the same put as \`etcdctl put\`, without
		etcdctl's process start and connect in every figure: one \`etcdctl
		put\` took $(p "$RAW/etcdctl-put.ms" 50) ms here as a process, median of 10).

		### Lease propagation: $NODES nodes

		A lease for a fake node (\`10.244.200.0-24\`, PublicIP 192.168.77.250,
		an etcd lease of 24 h) put, then deleted, $PUTS times per agent (2
		rounds before not counted), the two agents taking turns (their order
		alternating), with 30–80 ms of rest between steps. Each step starts on
		the driver's clock just before it sends the request and ends, on each
		node, when \`ip -ts monitor route\` there sees the route to the fake
		subnet come (or go); the next step waits until every node has it. ip
		stamps an event when it reads it, so a late wake-up of the monitor
		(20 of them, and 20 agents, share $(nproc) CPUs) counts against the
		agent: these are upper bounds. $((NODES * PUTS)) samples per cell (every node,
		every put); percentiles by nearest rank.

	EOF
	prop_table
	cat <<-EOF

		etcd's own reply to each put (the driver's request to its answer):
		p50 $(p "$RAW/prop-put.ms" 50) ms, p99 $(p "$RAW/prop-put.ms" 99) ms. etcd sends the
		watch events when it applies the put, which can be before the
		gateway's answer reaches the driver, so a route can come in less
		time than the put's reply takes.

		### Scale: $LEASES leases at once, one node

		The propagation nodes go; one fresh node under its own prefix
		(\`/bench/scale\`, \`--cidr 10.0.0.0/8\`, its own subnet
		10.1.0.0/24). $LEASES leases of fake nodes (10.100.0.0/24 and up,
		each with its own PublicIP in 198.18.0.0/15 and its own VTEP MAC)
		are put in transactions of 100 (etcd allows 128 operations in one),
		sent back to back, then the same for the naive agent under its
		prefix. Times are from just before the first transaction: until the
		node's last route event (\`ip -ts monitor route\`), and until a poll
		every 50 ms (\`ip route\`, \`bridge fdb\`, \`ip neigh\` on the device,
		each counted) finds all $LEASES routes, FDB entries and neighbours.
		Then memory (VmRSS, VmHWM from \`/proc/PID/status\`), and, after
		2 s of rest, $IDLE s with no change in the store: the context switches
		(voluntary + nonvoluntary, summed over \`/proc/PID/task/*/status\`)
		and CPU time (utime + stime, \`/proc/PID/stat\`). The node's lease
		has a TTL of 24 h, renewed every 8 h (a third of it), so no renewal
		falls in the window. For the naive agent these are etcdctl's and its
		shell loop's together (the \`ip\`/\`bridge\` it runs are gone when
		idle). Then every fake lease goes in one delete of their key range,
		timed the same way.

	EOF
	scale_table
	cat <<-'EOF'

		### Reading the figures

		The goals, as this run saw them:

	EOF
	verdicts
	cat <<-EOF

		What the figures say (the commit measured is rcon $rcon_rev, above):

		- Propagation is the watch, not the store: etcd sends a watch
		  event when it applies a put, so a node's route comes about as
		  soon as the put is durable, often before the gateway's answer
		  to the put reaches the driver (compare the put's own reply time
		  above). The agent's part is one wake-up per batch: it reads what has arrived (a burst is one batch),
		  works out the difference from the peers it holds in memory,
		  and programs the neighbour, the FDB entry and the route with
		  one netlink request each, in its own process, the batch's
		  requests sent together. Its tail comes
		  from the machine: $NODES agents, $NODES monitors and etcd
		  wake at once on $(nproc) CPUs, so the last node to be
		  scheduled waits for the others.
		- The naive agent spends three process starts per event per
		  node (\`ip neigh\`, \`bridge fdb\`, \`ip route\`, each a few
		  ms here), and $NODES nodes do that at the same moment on
		  $(nproc) CPUs: that is the difference in the first table, and
		  with $LEASES leases it is the whole figure ($LEASES × 3
		  processes one after another). rcon's time for $LEASES peers
		  is 3 netlink requests per peer with no process started, a
		  batch's additions sent together with up to 128 in flight on
		  the agent's one socket (\`Netlink::send_all\`): a batch costs
		  the kernel's work, not a round trip per entry, and etcd's own
		  handling of the transactions is a good part of the figure.
		- Memory: the agent is one process with a current-thread tokio
		  runtime for the etcd client and another for netlink; the peers it holds cost little beside the binary
		  and its libraries (compare VmRSS with $NODES peers and with
		  $LEASES). The naive agent is etcdctl (a Go program, its
		  runtime and threads) plus two shells.
		- Idle: the agent waits on its watch stream and one timer, the
		  lease renewal (a third of the TTL: 8 h with the default 24 h).
		  Nothing else wakes it: no polling, no resync timer, no gRPC
		  keepalive ping. A connection to etcd that dies silently (a
		  host that vanishes without a reset) is found by TCP keepalive
		  instead, which the kernel runs without waking the agent
		  (probes after 30 s idle; the agent wakes only when the socket
		  fails); an etcd that stops or restarts closes the connection
		  and the agent lists again at once. etcdctl's Go runtime, by contrast,
		  wakes on its own (the context switches of the naive row).
		- The puts in the scale run are $LEASES keys in $(((LEASES + 99) / 100)) transactions,
		  so the agent sees them in a handful of watch responses; $LEASES
		  nodes joining one by one would each be a batch of their own,
		  each costing a record write of every peer (the agent writes
		  its peers to one file per batch).
	EOF
} >"$section.new"
bench_section_out bench-etcd "$section"
