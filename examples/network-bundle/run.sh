#!/usr/bin/env bash
# Run the network-bundle example: OCI bundles wired to an rcon bridge
# network without any docker-style flag.
#   1. two bundles whose config.json carries the `rcon.network` annotation
#      (and `rcon.ip` for a fixed address, `rcon.ports` to publish a port):
#      `rcon run --bundle` attaches them, one reaches the other over TCP,
#      and the node reaches the server through its published port;
#   2. when runc is installed, a bundle run by runc whose createRuntime and
#      poststop hooks call `rcon network hook`.
# rcon runs inside a throwaway "node" network namespace, so the bridge, the
# rules and ip_forward never touch the machine's own namespace; the node and
# everything under /tmp are removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# shellcheck source=SCRIPTDIR/../../hack/lib/world.sh
. "$repo/hack/lib/world.sh"
if [[ ${1:-} != inside ]]; then
	world_in_node rtexnet$$ "${BASH_SOURCE[0]}"
	exit
fi
world_init exnet

# bundle NAME JQ-FILTER: the busybox rootfs plus this directory's config.json, edited.
bundle() {
	mkdir -p "$WORLD/$1"
	cp -a "$repo/hack/.cache/busybox/rootfs" "$WORLD/$1/rootfs"
	jq "$2" "$here/config.json" >"$WORLD/$1/config.json"
}
"$repo/hack/mkbundle.sh" >/dev/null

run rcon network create --subnet 10.97.0.0/24 exnet

# 1. A server with a fixed address, and a client that talks to it.
bundle server '.annotations["rcon.ip"] = "10.97.0.10" | .annotations["rcon.ports"] = "8097:7000" | .process.args = ["nc", "-ll", "-p", "7000", "-e", "echo", "hello-from-server"]'
bundle client '.process.args = ["nc", "-w", "2", "10.97.0.10", "7000"]'
run rcon run --detach --bundle "$WORLD/server" exserver
reply=$(run rcon run --bundle "$WORLD/client" exclient)
echo "client got: $reply"
[[ $reply == hello-from-server ]] || {
	echo "run.sh: the client did not reach the server" >&2
	exit 1
}
reply=$(busybox nc -w 2 127.0.0.1 8097 </dev/null)
echo "node got via published port: $reply"
[[ $reply == hello-from-server ]] || {
	echo "run.sh: the node did not reach the server's published port 8097" >&2
	exit 1
}
run rcon network inspect exnet | jq -c '.endpoints[] | {ip, ifname, owner, ports}'

# 2. Another runtime, wired by the hook mode.
if command -v runc >/dev/null; then
	hook=$(jq -n --arg rcon "$RCON" --arg r "$RCON_ROOT" --arg d "$RCON_DATA_ROOT" --arg n "$RCON_NETNS_DIR" \
		'{path: $rcon, args: ["rcon", "network", "hook"], env: ["RCON_ROOT=" + $r, "RCON_DATA_ROOT=" + $d, "RCON_NETNS_DIR=" + $n]}')
	bundle viarunc ".process.args = [\"nc\", \"-w\", \"2\", \"10.97.0.10\", \"7000\"]
		| .hooks = {createRuntime: [$hook], poststop: [$hook]}"
	reply=$(run runc --root "$WORLD/runc" run --bundle "$WORLD/viarunc" exrunc)
	echo "runc container got: $reply"
	[[ $reply == hello-from-server ]] || {
		echo "run.sh: the runc container did not reach the server" >&2
		exit 1
	}
	left=$(rcon network inspect exnet | jq '[.endpoints[] | select(.owner == "exrunc")] | length')
	[[ $left == 0 ]] || {
		echo "run.sh: the poststop hook did not release the runc container's endpoint" >&2
		exit 1
	}
	echo "ok: runc's container was wired and released by rcon network hook"
else
	echo "runc not installed: skipping the hook-mode part"
fi

run rcon delete --force exserver
run rcon network rm exnet
echo "ok: bundles wired by annotations talked over network exnet"
