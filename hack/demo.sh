#!/usr/bin/env bash
# A short narrated tour of rcon, run entirely inside a throwaway world: a temp
# dir holds the state root, data root and named-netns dir, and an exit trap
# removes containers, namespaces and mounts whether the demo passes or fails.
# Nothing here touches the machine's own network namespace.
#
#   hack/demo.sh          (make demo builds rcon and the rootfs first)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/world.sh
. "$repo/hack/lib/world.sh"

# Bold headings on a terminal only, so that logs stay plain.
if [[ -t 1 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
step=0
say() {
	step=$((step + 1))
	printf '\n%s== %d. %s%s\n' "$BOLD" "$step" "$*" "$PLAIN"
}
note() { printf '   %s\n' "$*"; }
# run CMD...: print the command, then run it with its output shown.
run() {
	printf '$ %s\n' "$*"
	"$@"
}
# capture CMD...: like run, and keep stdout in $OUT for a check.
capture() {
	printf '$ %s\n' "$*"
	OUT=$("$@")
	printf '%s\n' "$OUT"
}
fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}

on_exit() {
	local rc=$?
	world_cleanup || true
	if ((rc == 0)); then
		printf '\n%s== done%s: every container, namespace and mount of the demo is gone\n' "$BOLD" "$PLAIN"
	else
		printf '\ndemo: failed (exit %d); the world was cleaned up anyway\n' "$rc" >&2
	fi
	exit "$rc"
}

world_init demo
trap on_exit EXIT
"$repo/hack/mkbundle.sh" >/dev/null

# bundle NAME ARGS...: a bundle under the world; prints its path.
bundle() {
	local dir=$WORLD/bundles/$1
	shift
	RCON=$RCON "$repo/hack/mkbundle.sh" --bundle "$dir" "$@"
	echo "$dir"
}
# join_netns BUNDLE FILE: the container joins an existing netns instead of a new one.
join_netns() {
	local cfg=$1/config.json
	jq --arg p "$2" '(.linux.namespaces[] | select(.type == "network") | .path) = $p' "$cfg" >"$cfg.new"
	mv "$cfg.new" "$cfg"
}
# allow_ping BUNDLE: busybox ping needs a raw socket, so CAP_NET_RAW.
allow_ping() {
	local cfg=$1/config.json
	jq '.process.capabilities |= map_values(. + ["CAP_NET_RAW"])' "$cfg" >"$cfg.new"
	mv "$cfg.new" "$cfg"
}

echo "rcon demo: state in $WORLD (RCON_ROOT, RCON_NETNS_DIR, RCON_DATA_ROOT point there)"

# ---------------------------------------------------------------------------
say "A container with a new network namespace sees only lo"
note "The default spec asks for a new netns, and nothing is attached to it."
blo=$(bundle lo ip -o link)
capture rcon run --bundle "$blo" demo-lo
[[ $(grep -c . <<<"$OUT") -eq 1 && $OUT == *" lo:"* ]] || fail "expected exactly one link, lo"

# ---------------------------------------------------------------------------
say "Two named namespaces joined by a veth pair"
note "rcon netns add makes them the way ip netns does: a bind mount of the"
note "namespace onto a file, here in the demo's private netns dir."
run rcon netns add demo-a
run rcon netns add demo-b
run rcon netns list
A=$RCON_NETNS_DIR/demo-a
B=$RCON_NETNS_DIR/demo-b
note "The veth pair is made inside demo-a and its peer moved to demo-b;"
note "neither end ever exists in the host's namespace."
run nsenter --net="$A" ip link add veth-a type veth peer name veth-b netns "$B"
run nsenter --net="$A" ip addr add 10.99.0.1/24 dev veth-a
run nsenter --net="$B" ip addr add 10.99.0.2/24 dev veth-b
for ns in "$A" "$B"; do
	run nsenter --net="$ns" ip link set lo up
done
run nsenter --net="$A" ip link set veth-a up
run nsenter --net="$B" ip link set veth-b up

say "One container in each namespace, pinging the other"
note "Their config.json names the netns file: linux.namespaces[network].path."
ba=$(bundle ping-a ping -c 2 -W 2 10.99.0.2)
join_netns "$ba" "$A"
allow_ping "$ba"
bb=$(bundle ping-b ping -c 2 -W 2 10.99.0.1)
join_netns "$bb" "$B"
allow_ping "$bb"
run jq -c '.linux.namespaces' "$ba/config.json"
run rcon run --bundle "$ba" demo-ping-a
run rcon run --bundle "$bb" demo-ping-b

# ---------------------------------------------------------------------------
say "Lifecycle: run --detach, state, kill, delete"
bs=$(bundle sleeper sleep 300)
run rcon run --detach --bundle "$bs" demo-bg
capture rcon state demo-bg
[[ $(jq -r .status <<<"$OUT") == running ]] || fail "demo-bg is not running"
note "sleep is PID 1 of its namespace and has no TERM handler, so send KILL."
run rcon kill demo-bg KILL
# The state turns to stopped once the kernel has reaped the process.
for _ in $(seq 50); do
	[[ $(rcon state demo-bg | jq -r .status) == stopped ]] && break
	sleep 0.1
done
capture rcon state demo-bg
[[ $(jq -r .status <<<"$OUT") == stopped ]] || fail "demo-bg did not stop"
run rcon delete demo-bg
note "Once deleted, the container is unknown:"
printf '$ %s\n' "rcon state demo-bg"
if rcon state demo-bg; then
	fail "demo-bg still exists after delete"
fi

say "Clean up"
run rcon netns delete demo-a demo-b
run rcon list
