#!/usr/bin/env bash
# Prove that a test run left the machine's root network namespace as it was.
#
#   hack/hostcheck.sh snapshot FILE   record links, named netns, nft tables,
#                                     mounts and rcon cgroups
#   hack/hostcheck.sh compare FILE    fail if anything new appeared since
#
# Only reads: `ip -o link`, directory listings, `nft list tables`, mountinfo.
# Something that disappeared is reported but not fatal (another process on
# the machine may have removed it); something new means a test leaked.
set -euo pipefail

state() {
	echo "## links"
	# "3: veth1@if2: <...>" -> "veth1": the peer index changes, the name does not.
	ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort
	echo "## netns"
	if [[ -d /var/run/netns ]]; then
		find /var/run/netns -mindepth 1 -maxdepth 1 -printf '%f\n' | sort
	fi
	echo "## nft"
	if command -v nft >/dev/null 2>&1; then
		nft list tables 2>/dev/null | sort || true
	fi
	# Mount points (field 5 of mountinfo), and the per-container cgroups rcon
	# makes under the cgroup2 mount.
	echo "## mounts"
	awk '{ print "mount " $5 }' /proc/self/mountinfo | sort -u
	echo "## cgroups"
	local cg
	cg=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
	if [[ -n $cg && -d $cg/rcon ]]; then
		find "$cg/rcon" -mindepth 1 -maxdepth 1 -type d -printf 'cgroup rcon/%f\n' | sort
	fi
}

case "${1:-}" in
snapshot)
	[[ -n ${2:-} ]] || { echo "usage: $0 snapshot FILE" >&2; exit 2; }
	state >"$2"
	;;
compare)
	[[ -n ${2:-} && -f $2 ]] || { echo "usage: $0 compare FILE (from a snapshot)" >&2; exit 2; }
	now=$(mktemp)
	trap 'rm -f "$now"' EXIT
	state >"$now"
	# Lines only in the new state ("+") are leaks; only in the old ("-") are notes.
	added=$(diff "$2" "$now" | sed -n 's/^> /+ /p' || true)
	gone=$(diff "$2" "$now" | sed -n 's/^< /- /p' || true)
	# On a shared machine another test run may be going on: a new rt* netns
	# whose pid digits match a live runtime-* test binary is that run's (ours
	# has exited by now), so it is noted, not counted. Same naming rule as
	# hack/sweep.sh.
	live=$(pgrep '^runtime-' | awk '{print $1 % 100000}' || true)
	others='' leaks=''
	while read -r line; do
		[[ -n $line ]] || continue
		name=${line#+ }
		mine=1
		if [[ $name =~ ^rt[a-z]*([0-9]+) ]]; then
			for p in $live; do
				[[ ${BASH_REMATCH[1]} == "$p"* ]] && mine=''
			done
		fi
		if [[ -n $mine ]]; then leaks+="$line"$'\n'; else others+="$line"$'\n'; fi
	done <<<"$added"
	added=${leaks%$'\n'}
	if [[ -n $others ]]; then
		echo "hostcheck: note, new but owned by a test run still going on:"
		printf '%s' "$others"
	fi
	if [[ -n $gone ]]; then
		echo "hostcheck: note, gone from the root namespace since the snapshot:"
		echo "$gone"
	fi
	if [[ -n $added ]]; then
		echo "hostcheck: FAIL, new in the root namespace after the tests (a test leaked):" >&2
		echo "$added" >&2
		exit 1
	fi
	echo "hostcheck: root namespace unchanged (links, named netns, nft tables, mounts, cgroups)"
	;;
*)
	echo "usage: $0 snapshot|compare FILE" >&2
	exit 2
	;;
esac
