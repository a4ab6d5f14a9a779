#!/usr/bin/env bash
# Run the pod-bundle example: OCI bundles that join a pod the way a CRI
# runtime does it, by listing the pod's namespace files in config.json.
#   1. `rcon pod create` makes the sandbox: a netns file, the pause process
#      (which holds the pod's ipc and uts namespaces) and the pod's address,
#      with port 7000 published on the node's 8096;
#   2. a server bundle and a client bundle, run by rcon, join the pod: the
#      client reaches the server over 127.0.0.1, both see the pod's hostname;
#   3. when runc is installed, runc runs the same client bundle in the pod;
#   4. `rcon pod rm -f` removes the server (it carries the rcon.pod
#      annotation), the pause process, the address and the netns.
# rcon runs inside a throwaway "node" network namespace; the node and
# everything under /tmp are removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# shellcheck source=SCRIPTDIR/../../hack/lib/world.sh
. "$repo/hack/lib/world.sh"
if [[ ${1:-} != inside ]]; then
	world_in_node rtexpod$$ "${BASH_SOURCE[0]}"
	exit
fi
fail() {
	echo "run.sh: $*" >&2
	exit 1
}
world_init expod
"$repo/hack/mkbundle.sh" >/dev/null

run rcon network create --subnet 10.96.0.0/24 expodnet
run rcon pod create --name expod --hostname expod-host --network expodnet -p 8096:7000 >/dev/null

# What a CRI caller asks the sandbox for: the files of its namespaces.
ns=$(rcon pod inspect expod | jq -c .namespaces)
echo "pod namespaces: $ns"

# bundle NAME ARGS-JSON: the busybox rootfs plus this directory's config.json,
# with the pod's namespace paths and the given process args.
bundle() {
	mkdir -p "$WORLD/$1"
	cp -a "$repo/hack/.cache/busybox/rootfs" "$WORLD/$1/rootfs"
	jq --argjson ns "$ns" --argjson args "$2" \
		'.linux.namespaces |= map(if $ns[.type] then .path = $ns[.type] else . end) | .process.args = $args' \
		"$here/config.json" >"$WORLD/$1/config.json"
}

# shellcheck disable=SC2016 # $(hostname) is for the server's shell
bundle server '["nc", "-ll", "-p", "7000", "-e", "sh", "-c", "echo hello-from-$(hostname)"]'
bundle client '["nc", "-w", "2", "127.0.0.1", "7000"]'
run rcon run --detach --bundle "$WORLD/server" expod-server
reply=$(run rcon run --bundle "$WORLD/client" expod-client)
echo "client got: $reply"
[[ $reply == hello-from-expod-host ]] || fail "the client did not reach the server over the pod's loopback"
reply=$(busybox nc -w 2 127.0.0.1 8096 </dev/null)
echo "node got via the pod's published port: $reply"
[[ $reply == hello-from-expod-host ]] || fail "the node did not reach the pod's published port 8096"

if command -v runc >/dev/null; then
	reply=$(run runc --root "$WORLD/runc" run --bundle "$WORLD/client" expod-runc)
	echo "runc container got: $reply"
	[[ $reply == hello-from-expod-host ]] || fail "the runc container did not reach the server in the pod"
else
	echo "runc not installed: skipping the runc part"
fi

run rcon pod ls
run rcon pod rm -f expod
[[ -z $(rcon list -q) ]] || fail "pod rm left the server container"
[[ ! -e $RCON_NETNS_DIR/expod ]] || fail "pod rm left the netns file"
run rcon network rm expodnet
echo "ok: bundles joined pod expod by namespace path"
