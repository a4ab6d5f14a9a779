#!/usr/bin/env bash
# Remove what crashed runs of the root integration tests left behind, so that
# one bad run does not poison the next:
#   - named netns /var/run/netns/rt<letters><digits>... (runtime-tests' unique())
#   - mounts under /tmp/rcon-rt* (the tests' private netns dirs and bind mounts)
#   - the temp dirs /tmp/rcon-rt* themselves
#   - rcon processes (pod pause processes, IPIP daemons, cluster agents) started
#     in those dirs' worlds, and other processes with such a dir on their
#     command line (the etcd a test started)
#
# Names made by a test binary that is still running are kept: unique() puts
# the test process's pid (mod 100000) right after the letters, so a name whose
# digits start with the pid of a live `runtime-*` test binary belongs to a run
# in progress (perhaps another engineer's). SWEEP_FORCE=1 removes those too.
#
# Only netns files, mounts and directories are touched: no link, route or
# firewall rule of the root namespace.
set -euo pipefail

netns_dir=/var/run/netns
force=${SWEEP_FORCE:-0}

if [[ $(id -u) -ne 0 ]]; then
	echo "sweep: needs root (it unmounts test leftovers)" >&2
	exit 1
fi

# pid % 100000 of every running test binary of the `runtime` test target.
live=()
while read -r pid; do
	[[ -n $pid ]] && live+=("$((pid % 100000))")
done < <(pgrep '^runtime-' || true)

# in_use NAME: true when NAME was made by a test binary that is still running.
in_use() {
	[[ $force == 1 ]] && return 1
	[[ $1 =~ ^(rcon-)?rt[a-z]*([0-9]+) ]] || return 1
	local digits=${BASH_REMATCH[2]} p
	for p in "${live[@]}"; do
		[[ $digits == "$p"* ]] && return 0
	done
	return 1
}

removed=0 kept=0

# 1. Named namespaces: unmount the nsfs bind mount, then remove the file.
if [[ -d $netns_dir ]]; then
	for f in "$netns_dir"/rt*; do
		[[ -e $f ]] || continue
		name=${f##*/}
		[[ $name =~ ^rt[a-z]*[0-9] ]] || continue
		if in_use "$name"; then
			kept=$((kept + 1))
			continue
		fi
		umount -l "$f" 2>/dev/null || true
		rm -f "$f"
		echo "sweep: removed netns $name"
		removed=$((removed + 1))
	done
fi

# 2. Pod pause processes (and userspace IPIP daemons) of the tests' worlds:
#    their RCON_ROOT or RCON_DATA_ROOT is under /tmp/rcon-rt*. They hold a
#    netns, so they go before the mounts.
for pid in $(pgrep -f rcon || true); do
	# The process may be gone by now: then there is nothing to read.
	world=$({ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null |
		sed -n 's#^RCON_\(ROOT\|DATA_ROOT\)=/tmp/\(rcon-rt[^/]*\).*#\2#p' | head -n 1 || true)
	[[ -n $world ]] || continue
	if in_use "$world"; then
		kept=$((kept + 1))
		continue
	fi
	if kill -KILL "$pid" 2>/dev/null; then
		echo "sweep: killed rcon process $pid of $world"
		removed=$((removed + 1))
	fi
done

# 2b. Other processes a test started with its world's dir on the command
#     line (etcd --data-dir /tmp/rcon-rt…/etcd, tcpdump -w …).
for pid in $(pgrep -f '/tmp/rcon-rt' || true); do
	[[ $pid == "$$" ]] && continue
	world=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null |
		sed -n 's#.*/tmp/\(rcon-rt[^/]*\).*#\1#p' | head -n 1 || true)
	[[ -n $world ]] || continue
	if in_use "$world"; then
		kept=$((kept + 1))
		continue
	fi
	if kill -KILL "$pid" 2>/dev/null; then
		echo "sweep: killed process $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo gone)) of $world"
		removed=$((removed + 1))
	fi
done

# 3. Mounts under /tmp/rcon-rt*, deepest first so that parents come off last.
#    Field 5 of mountinfo is the mount point, with spaces escaped as \040.
mapfile -t mounts < <(awk '$5 ~ "^/tmp/rcon-rt" {print $5}' /proc/self/mountinfo | sort -ru)
for m in "${mounts[@]}"; do
	top=${m#/tmp/}
	top=${top%%/*}
	if in_use "$top"; then
		kept=$((kept + 1))
		continue
	fi
	path=$(printf "%b" "$m") # undo the octal escapes (\040 and friends)
	if umount -l "$path" 2>/dev/null; then
		echo "sweep: unmounted $path"
		removed=$((removed + 1))
	fi
done

# 4. The temp dirs. --one-file-system: never follow into a mount that step 2
#    could not remove.
for d in /tmp/rcon-rt*; do
	[[ -d $d ]] || continue
	if in_use "${d##*/}"; then
		kept=$((kept + 1))
		continue
	fi
	if rm -rf --one-file-system "$d" 2>/dev/null; then
		echo "sweep: removed $d"
		removed=$((removed + 1))
	else
		echo "sweep: could not remove $d (still mounted?)" >&2
	fi
done

echo "sweep: removed $removed leftover(s), kept $kept in use by running tests"
