# shellcheck shell=bash
# A throwaway rcon world for scripts (demo, examples, bench): private state,
# data and netns dirs in one temp dir, and a cleanup that undoes everything
# rcon or the script made there. Source it, then call world_init.
#
# After world_init:
#   WORLD            the temp dir
#   RCON             the rcon binary ($RCON, else target/release/rcon)
#   RCON_ROOT, RCON_NETNS_DIR, RCON_DATA_ROOT   exported, so every rcon call
#                    (and every child) stays inside the world
#   rcon ARGS...     runs $RCON
#   world_cleanup    deletes containers, named netns, mounts, the temp dir;
#                    world_init installs it as the EXIT trap.

_world_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# netns_baseline NS: the sysctl baseline of every namespace a world makes.
NETNS_BASELINE_CONF=${NETNS_BASELINE_CONF:-$_world_repo/hack/lib/netns-baseline.conf}
# shellcheck source=SCRIPTDIR/netns-baseline.sh
. "$_world_repo/hack/lib/netns-baseline.sh"

# run CMD...: show the command on stderr, then run it.
run() {
	echo "+ $*" >&2
	"$@"
}

# world_in_node NODE SCRIPT: run SCRIPT again, with the argument `inside`,
# in a fresh network namespace NODE (lo up) that goes when this shell
# exits. For scripts whose bridges, rules and ip_forward must stay out of
# the machine's own namespace. NODE starts from the sysctl baseline
# (ip_forward 0... whatever the machine's own namespace has: see
# netns-baseline.conf). Name NODE rt<letters><pid> so that hack/sweep.sh
# removes it after a crash.
world_in_node() {
	local node=$1 script=$2
	ip netns add "$node"
	# shellcheck disable=SC2064 # expand now: the trap outlives this function
	trap "ip netns delete '$node' 2>/dev/null || true" EXIT
	netns_baseline "$node"
	ip -n "$node" link set lo up
	nsenter --net="/var/run/netns/$node" bash "$script" inside
}

rcon() {
	"$RCON" "$@"
}

# world_init TAG: make the world and arm the cleanup.
world_init() {
	local tag=${1:-world}
	RCON=${RCON:-$_world_repo/target/release/rcon}
	if [[ ! -x $RCON ]]; then
		echo "rcon binary not found at $RCON (run 'make build' or set RCON)" >&2
		return 1
	fi
	WORLD=$(mktemp -d "/tmp/rcon-$tag.XXXXXX")
	export RCON_ROOT=$WORLD/run RCON_NETNS_DIR=$WORLD/netns RCON_DATA_ROOT=$WORLD/lib
	mkdir -p "$RCON_ROOT" "$RCON_NETNS_DIR" "$RCON_DATA_ROOT"
	trap world_cleanup EXIT
}

# world_cleanup: safe to call more than once and after a partial failure.
world_cleanup() {
	local rc=$? id f
	[[ -n ${WORLD:-} && -d $WORLD ]] || return "$rc"
	# Containers first: their processes hold namespaces and mounts.
	if [[ -d $RCON_ROOT ]]; then
		for id in "$RCON_ROOT"/*; do
			[[ -e $id ]] || continue
			"$RCON" delete --force "${id##*/}" >/dev/null 2>&1 || true
		done
	fi
	# Named netns: ask rcon, then make sure: unmount every bind mount and the
	# dir itself (rcon may have made it a shared mount point, like ip netns).
	if [[ -d $RCON_NETNS_DIR ]]; then
		for f in "$RCON_NETNS_DIR"/*; do
			[[ -e $f ]] || continue
			"$RCON" netns delete "${f##*/}" >/dev/null 2>&1 || true
			umount -l "$f" 2>/dev/null || true
		done
		while umount -l "$RCON_NETNS_DIR" 2>/dev/null; do :; done
	fi
	# Anything else still mounted below the world (a crashed container's
	# rootfs, say), deepest first.
	awk -v w="$WORLD" 'index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r f; do umount -l "$(printf '%b' "$f")" 2>/dev/null || true; done
	rm -rf --one-file-system "$WORLD" 2>/dev/null || echo "cleanup: could not remove $WORLD" >&2
	WORLD=
	return "$rc"
}
