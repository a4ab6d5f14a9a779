#!/usr/bin/env bash
# Time a container's whole life (create + start + wait + delete) of a busybox
# `true` bundle with rcon, runc and crun side by side in one hyperfine run,
# next to two floors (`unshare -nmpui -f true`, `/bin/true`), and write the
# figures to docs/PERFORMANCE.md.
#
#   hack/bench.sh                  (make bench installs deps and builds first)
#   BENCH_RUNS=10 hack/bench.sh    fewer runs for a quick look
#   BENCH_OUT=/tmp/p.md            write somewhere else
#
# Every runtime gets the same bundle (config from `rcon spec`: new pid, net,
# ipc, uts and mount namespaces; read-only rootfs) and a private state root
# inside a throwaway world. No runtime touches the host's network: each
# container's only link is its own lo.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/world.sh
. "$repo/hack/lib/world.sh"
# shellcheck source=SCRIPTDIR/lib/mdsection.sh
. "$repo/hack/lib/mdsection.sh"

WARMUP=${BENCH_WARMUP:-3}
RUNS=${BENCH_RUNS:-30}
OUT=${BENCH_OUT:-$repo/docs/PERFORMANCE.md}
CACHE=$repo/hack/.cache/bench # raw hyperfine JSON and logs (not committed)

for tool in hyperfine runc crun jq unshare; do
	command -v "$tool" >/dev/null || {
		echo "bench: $tool not found (hack/install-deps.sh --bench)" >&2
		exit 1
	}
done
[[ $(id -u) -eq 0 ]] || {
	echo "bench: needs root (runtimes make namespaces and mounts)" >&2
	exit 1
}

world_init bench
mkdir -p "$CACHE" "$WORLD/bin"

# --- bundles ---------------------------------------------------------------
bundle=$WORLD/bundle
RCON=$RCON "$repo/hack/mkbundle.sh" --bundle "$bundle" true >/dev/null
# crun 1.8 rejects ociVersion 1.2.0 ("unknown version specified"); give it
# the same config under a version it knows. Nothing else differs.
crun_bundle=$WORLD/bundle-crun
mkdir -p "$crun_bundle"
cp -a "$bundle/rootfs" "$crun_bundle/rootfs"
jq '.ociVersion = "1.0.2-dev"' "$bundle/config.json" >"$crun_bundle/config.json"
# The same bundle with Docker-style limits: a 64 MB memory limit and 100 pids.
limits='.linux.resources = {"memory": {"limit": 67108864}, "pids": {"limit": 100}}'
limits_bundle=$WORLD/bundle-limits
mkdir -p "$limits_bundle"
# The same rootfs by absolute path (runc refuses a symlinked one).
jq --arg root "$bundle/rootfs" "$limits | .root.path = \$root" "$bundle/config.json" >"$limits_bundle/config.json"

# --- wrappers ----------------------------------------------------------------
# One small sh script per row, so that every row pays the same overhead (one
# sh start and one fork+exec) and only what it runs differs. A runtime row
# runs one container under a fresh id ($$: unique among live processes, and
# the previous run's container is gone), then deletes it only if `run` left
# state behind (runc, crun and rcon all delete on exit by themselves).
wrap() { # wrap NAME BODY
	printf '#!/bin/sh\nset -e\n%s\n' "$2" >"$WORLD/bin/$1"
	chmod +x "$WORLD/bin/$1"
}
runtime_body() { # runtime_body BIN STATE BUNDLE [GLOBAL-FLAGS]
	local bin=$1 state=$2 b=$3 flags=${4:-}
	cat <<-EOF
		id=bench\$\$
		$bin $flags --root $state run --bundle $b "\$id" >/dev/null
		[ ! -e $state/"\$id" ] || $bin $flags --root $state delete --force "\$id"
	EOF
}
wrap rcon "$(runtime_body "$RCON" "$RCON_ROOT" "$bundle")"
wrap runc "$(runtime_body "$(command -v runc)" "$WORLD/runc" "$bundle")"
wrap crun "$(runtime_body "$(command -v crun)" "$WORLD/crun" "$crun_bundle")"
wrap unshare "$(command -v unshare) -nmpui -f true"
wrap rcon-limits "$(runtime_body "$RCON" "$RCON_ROOT" "$limits_bundle")"
wrap runc-limits "$(runtime_body "$(command -v runc)" "$WORLD/runc" "$limits_bundle")"
# From image to exit: rcon makes the bundle itself (overlay on the image's
# unpacked rootfs, config from the image) and removes everything after.
"$repo/hack/mkimage.sh" >/dev/null
"$RCON" image import "$repo/hack/.cache/busybox-oci" busybox >/dev/null
wrap rcon-image "$RCON run --rm --net none busybox true >/dev/null"
wrap true "/bin/true"
wrap rcon-version "$RCON --version >/dev/null"

declare -A label=(
	[rcon]="rcon run"
	[runc]="runc run"
	[crun]="crun run"
	[unshare]="unshare -nmpui -f true"
	[rcon-limits]="rcon run, 64 MB and 100 pids"
	[runc-limits]="runc run, 64 MB and 100 pids"
	[rcon-image]="rcon run --rm --net none busybox true"
	[true]="/bin/true"
	[rcon-version]="rcon --version"
)

# cgroup layout, described for the report; "hybrid" is what crun refuses.
cgroup_layout() {
	if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
		echo "cgroup v2 (unified)"
	elif [[ -e /sys/fs/cgroup/unified/cgroup.controllers ]]; then
		local c
		c=$(tr -s ' \n' ' ' </sys/fs/cgroup/unified/cgroup.controllers | sed 's/ *$//')
		echo "hybrid: cgroup v1 controllers, cgroup2 at /sys/fs/cgroup/unified (controllers: ${c:-none})"
	else
		echo "cgroup v1"
	fi
}

# In "hidden" mode a command runs in a private mount namespace in which the
# cgroup2 mount of a hybrid layout is unmounted; in "tmpfs" mode, in one where
# the runtimes' state roots are fresh tmpfs mounts, as /run is on most hosts
# (here it is ext4). The host's mounts are untouched either way.
in_mode() { # in_mode MODE CMD...
	local mode=$1
	shift
	case $mode in
	hidden)
		unshare -m --propagation private sh -c \
			'mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified; exec "$@"' sh "$@"
		;;
	tmpfs)
		unshare -m --propagation private sh -c \
			'for d in "$RCON_ROOT" "$0"; do mount -t tmpfs -o mode=0711 rcon-bench "$d" || exit 1; done; exec "$@"' \
			"$WORLD/runc" "$@"
		;;
	*) "$@" ;;
	esac
}

declare -A refused=() # row -> the error of its trial run
# trial MODE ROW: run a row once; on failure keep its error and say so.
trial() {
	local err
	if err=$(in_mode "$1" "$WORLD/bin/$2" 2>&1 >/dev/null); then
		return 0
	fi
	refused[$2]=$(printf '%s' "$err" | tr '\n' ' ' | sed 's/ *$//' | cut -c1-300)
	echo "bench: ${label[$2]} failed its trial run${1:+ ($1)}: ${refused[$2]:-exit status non-zero, no message}" >&2
	return 1
}

# bench_set MODE JSON ROWS...: one hyperfine run over the rows that pass a trial.
bench_set() {
	local mode=$1 json=$2 row
	shift 2
	local args=(-N --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" --style basic)
	local n=0
	for row in "$@"; do
		trial "$mode" "$row" || continue
		args+=(-n "${label[$row]}" "$WORLD/bin/$row")
		n=$((n + 1))
	done
	((n > 0)) || return 1
	echo "bench: hyperfine over $n commands ($mode layout), $WARMUP warmups + $RUNS runs each"
	in_mode "$mode" hyperfine "${args[@]}"
}

# table JSON [BASE]: markdown rows, ratio against BASE (default "runc run")
# when it was measured.
table() {
	echo "| runtime | mean ms | stddev ms | median ms | min ms | ratio to runc |"
	echo "|---|---:|---:|---:|---:|---:|"
	jq -r --arg base "${2:-runc run}" '([.results[] | select(.command == $base) | .mean] | first) as $base
		| .results[]
		| [.command, .mean * 1000, .stddev * 1000, .median * 1000, .min * 1000,
		   (if $base then .mean / $base else "" end)] | @tsv' "$1" |
		while IFS=$'\t' read -r name mean sd median min ratio; do
			[[ -n $ratio ]] && ratio=$(printf '%.2f×' "$ratio") || ratio="n/a"
			printf '| %s | %.1f | %.1f | %.1f | %.1f | %s |\n' "$name" "$mean" "$sd" "$median" "$min" "$ratio"
		done
}

layout=$(cgroup_layout)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
main_json=$CACHE/lifecycle.json
hidden_json=$CACHE/lifecycle-cgroup2-hidden.json
image_json=$CACHE/image-to-exit.json
limits_json=$CACHE/lifecycle-limits.json
tmpfs_json=$CACHE/lifecycle-tmpfs.json
rm -f "$main_json" "$hidden_json" "$image_json" "$limits_json" "$tmpfs_json"

bench_set host "$image_json" rcon-image runc || true

bench_set host "$limits_json" rcon-limits runc-limits rcon runc || true
mkdir -p "$WORLD/runc"
bench_set tmpfs "$tmpfs_json" rcon-limits runc-limits rcon runc || true

bench_set host "$main_json" rcon runc crun unshare rcon-version true

# phases BUNDLE: where one `rcon run` spends its time, from the timestamps of
# its --debug lines: the median of each step over $RUNS runs, as a table.
phases() {
	local i log=$CACHE/phases.log
	: >"$log"
	for ((i = 0; i < RUNS; i++)); do
		"$RCON" --debug run --bundle "$1" "phase$$-$i" 2>&1 >/dev/null | grep ' debug ' >>"$log" || true
	done
	python3 - "$log" <<-'PY'
		import re, statistics, sys
		from datetime import datetime
		runs, order = {}, []
		for line in open(sys.argv[1]):
		    m = re.match(r'(\S+) debug (.*?)(?: id=(\S+).*)?$', line.strip())
		    if not m:
		        continue
		    t = datetime.fromisoformat(m.group(1)[:26].rstrip('Z'))
		    step = m.group(2).split(':')[0]
		    if step == 'command line parsed':
		        runs.setdefault('cur', []).clear()
		    runs.setdefault('cur', []).append((step, t))
		    if step == 'deleted':
		        for (a, ta), (b, tb) in zip(runs['cur'], runs['cur'][1:]):
		            key = (a, b)
		            if key not in runs:
		                runs[key] = []
		                order.append(key)
		            runs[key].append((tb - ta).total_seconds() * 1000)
		print('| from | to | median ms |')
		print('|---|---|---:|')
		for a, b in order:
		    print(f'| {a} | {b} | {statistics.median(runs[(a, b)]):.2f} |')
	PY
}
phase_table=$(phases "$limits_bundle" 2>&1) || phase_table="_The phases could not be measured: ${phase_table}_"
main_refused=$(for r in "${!refused[@]}"; do printf '%s\t%s\n' "$r" "${refused[$r]}"; done | sort)

# crun refuses a hybrid layout outright; to still have a crun figure, time the
# three runtimes again where the cgroup2 mount is hidden (all three under the
# same condition, so the second table compares like with like).
hidden_done='' hidden_tried=''
if [[ -n ${refused[crun]:-} && $layout == hybrid* ]]; then
	hidden_tried=1
	refused=()
	if bench_set hidden "$hidden_json" rcon runc crun; then hidden_done=1; fi
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the report ------------------------------------------------------------------
# The network, pod, cluster and etcd sections belong to hack/bench-net.sh,
# hack/bench-ports.sh, hack/bench-pods.sh, hack/bench-cluster.sh and
# hack/bench-etcd.sh, hack/bench-cni.sh, hack/bench-dns.sh, hack/bench-services.sh and
# hack/bench-attach-phases.sh: carry them
# over as they are.
carried=()
for owner in bench-net bench-attach-phases bench-ports bench-services bench-pods bench-cluster bench-etcd bench-cni bench-dns; do
	sec=$(md_section_get "$OUT" "$owner")
	if [[ -n $sec ]]; then carried+=("$sec"); fi
done
# The "Where the time goes" section is written by people: keep it across runs.
kept=
if [[ -f $OUT ]]; then
	kept=$(awk '/^## Where the time goes/ {f = 1; next} f && /^## / {f = 0} f' "$OUT")
fi
if [[ -z ${kept//[[:space:]]/} ]]; then
	kept="
_To be written by the runtime engineers: a breakdown of \`rcon run\`
(spawn and re-exec, namespace creation, mounts and pivot_root, state writes,
wait and teardown) measured with \`--debug\` timestamps, perf or strace -T,
and what would make each part cheaper._
"
fi

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rcon_rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)

tmp=$OUT.new
{
	cat <<-EOF
		# Performance

		Generated by \`make bench\` ([hack/bench.sh](../hack/bench.sh)); rerun it rather
		than editing the tables. The last section is kept across runs. The
		network sections are written by [hack/bench-net.sh](../hack/bench-net.sh)
		and [hack/bench-ports.sh](../hack/bench-ports.sh), the service VIPs by
		[hack/bench-services.sh](../hack/bench-services.sh), the pod section by
		[hack/bench-pods.sh](../hack/bench-pods.sh), the cross-host section by
		[hack/bench-cluster.sh](../hack/bench-cluster.sh), the etcd section by
		[hack/bench-etcd.sh](../hack/bench-etcd.sh), the CNI section by
		[hack/bench-cni.sh](../hack/bench-cni.sh), the DNS section by
		[hack/bench-dns.sh](../hack/bench-dns.sh) and the phases of an attach by
		[hack/bench-attach-phases.sh](../hack/bench-attach-phases.sh).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC')
		- kernel: $(uname -r)
		- CPU: ${cpu:-unknown} × $(nproc)
		- cgroups: $layout
		- load average (1, 5, 15 min) before: $load_before, after: $load_after; on
		  a 2-core machine any other work shows in the figures (the floors too),
		  so compare rows within one table, and the min column when it is noisy
		- rcon $rcon_rev (release build), $(runc --version | head -1), $(crun --version | head -1), $(hyperfine --version)

		## Container lifecycle: \`run\` of a busybox \`true\` bundle

		One hyperfine run (\`-N --warmup $WARMUP --runs $RUNS\`) over all rows, so
		that they share the machine's state. Each runtime row is a small \`sh\`
		script that runs one container under a fresh id in a private state root
		(create, start, wait, delete; the container is removed by \`run\` itself),
		from the same bundle: config from \`rcon spec\` with new pid, network,
		ipc, uts and mount namespaces, read-only rootfs, terminal off. The
		floors go through the same kind of script, so every row pays the same
		\`sh\` start. For crun the config's \`ociVersion\` is set to 1.0.2-dev
		(crun 1.8 refuses 1.2.0); nothing else differs.

	EOF
	if [[ -f $main_json ]]; then
		table "$main_json"
	else
		echo "_No row could be measured: see the notes._"
	fi
	if [[ -n $main_refused ]]; then
		echo
		echo "Not measured on this machine as it is:"
		echo
		while IFS=$'\t' read -r r e; do
			printf -- '- %s: `%s`\n' "${label[$r]}" "${e:-failed without a message}"
		done <<<"$main_refused"
	fi
	if [[ -n $hidden_done ]]; then
		cat <<-EOF

			### Same, with cgroup2 hidden

			crun refuses this machine's hybrid cgroup layout (cgroup2 at
			/sys/fs/cgroup/unified still holds a controller). To have a crun figure
			anyway, the three runtimes were timed again, in a second hyperfine run,
			inside a private mount namespace in which that cgroup2 mount is
			unmounted: a pure cgroup v1 layout as far as they can tell. The host's
			mounts are not changed.

		EOF
		table "$hidden_json"
	fi
	if [[ -n $hidden_tried ]] && ((${#refused[@]} > 0)); then
		echo
		for r in "${!refused[@]}"; do
			printf -- '- %s also failed with cgroup2 hidden: `%s`\n' "${label[$r]}" "${refused[$r]}"
		done
	fi
	cat <<-EOF

		## With limits: a 64 MB memory limit and 100 pids

		The bundle above with \`linux.resources\` set to a 64 MB memory limit
		and a limit of 100 pids, as \`docker run -m 64m --pids-limit 100\` asks
		for. Both runtimes make and fill their cgroups (on this host, the v1
		memory and pids controllers) and remove them at delete. The rows without
		limits were in the same hyperfine run; the ratio is to runc with the
		same limits.

	EOF
	if [[ -f $limits_json ]]; then
		table "$limits_json" "${label[runc-limits]}"
	else
		echo "_Not measured: ${refused[rcon-limits]:-${refused[runc-limits]:-the rows failed}}_"
	fi
	if [[ -f $tmpfs_json ]]; then
		cat <<-EOF

			### Same, with the state roots on tmpfs

			On most hosts /run, where runc and rcon keep their state, is a tmpfs;
			on this machine it is ext4, where each create, rename or unlink is a
			journal operation. The four rows again, in a second hyperfine run,
			inside a private mount namespace in which both runtimes' state roots
			are fresh tmpfs mounts.

		EOF
		table "$tmpfs_json" "${label[runc-limits]}"
	fi
	cat <<-EOF

		### Phases of one \`rcon run\` with limits

		The median time between the \`--debug\` lines of $RUNS \`rcon --debug run\`
		calls of the bundle with limits, one after another, right after the
		hyperfine runs. Starting the binary, before the first line, is the
		\`rcon --version\` row above less \`/bin/true\`.

	EOF
	printf '%s\n' "$phase_table"
	cat <<-EOF

		## From image to exit: \`rcon run --rm busybox true\`

		rcon starts from the imported busybox image: it mounts an overlay on the
		image's unpacked rootfs, writes config.json from the image config, runs
		the container, and removes the container, its overlay and its upper dir.
		runc runs the equivalent bundle (the same busybox rootfs already
		unpacked, the same namespaces) and deletes its state. Both rows were in
		one hyperfine run; the runc row is the same wrapper as above.

	EOF
	if [[ -f $image_json ]]; then
		table "$image_json"
	else
		echo "_Not measured: ${refused[rcon-image]:-the image rows failed}_"
	fi
	for sec in "${carried[@]}"; do
		echo
		printf '%s\n' "$sec"
	done
	echo
	echo "## Where the time goes"
	printf '%s\n' "$kept"
} >"$tmp"
# Collapse runs of blank lines (the kept section carries its own).
cat -s "$tmp" >"$OUT"
rm -f "$tmp"
echo "bench: wrote $OUT (raw results in $CACHE)"
