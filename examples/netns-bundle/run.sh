#!/usr/bin/env bash
# Run the netns-bundle example: a container that joins a named network
# namespace made by `rcon netns add`, and prints that namespace's addresses.
# Everything lives in a throwaway world under /tmp and is removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../hack/lib/world.sh
. "$repo/hack/lib/world.sh"

world_init example
name=example$$
ns=$RCON_NETNS_DIR/$name
bundle=$WORLD/bundle

# 1. The bundle: the busybox rootfs plus the template, with its placeholder
#    netns path replaced by the namespace we are about to make.
"$repo/hack/mkbundle.sh" >/dev/null
mkdir -p "$bundle"
cp -a "$repo/hack/.cache/busybox/rootfs" "$bundle/rootfs"
jq --arg p "$ns" '(.linux.namespaces[] | select(.type == "network") | .path) = $p' \
	"$here/config.json" >"$bundle/config.json"

# 2. The named namespace, with something in it worth seeing: a veth pair
#    (both ends stay inside it) and an address.
run rcon netns add "$name"
run nsenter --net="$ns" ip link add ex0 type veth peer name ex1
run nsenter --net="$ns" ip addr add 10.98.0.1/24 dev ex0
run nsenter --net="$ns" ip link set ex0 up
run nsenter --net="$ns" ip link set ex1 up

# 3. The container joins it: `ip addr` inside shows ex0 and its address.
out=$(run rcon run --bundle "$bundle" "ex$$")
echo "$out"
grep -q 'inet 10.98.0.1/24' <<<"$out" || {
	echo "run.sh: the container did not see the named namespace's address" >&2
	exit 1
}
echo "ok: the container ran in netns $name"
