#!/usr/bin/env bash
# Time attaching a container to a bridge network (veth pair, bridge port,
# address, routes, firewall) and detaching it, one container after another,
# with rcon, netavark (Podman's, iptables driver) and the CNI `bridge` +
# `host-local` plugins doing the same work, at 1, 200 and 1000 containers on
# one network. Writes a section of docs/PERFORMANCE.md.
#
#   hack/bench-net.sh                  (make bench installs deps and builds first)
#   hack/bench-net.sh --quick          1, 20 and 50 containers; writes only the
#                                      cache file unless BENCH_OUT is set
#   BENCH_NET_COUNTS="1 200 1000"      how many containers per run
#   BENCH_NET_TOOLS="netavark cni rcon" which tools, in this order
#   BENCH_NET_SETTLE=2                 seconds of rest after each run
#   BENCH_OUT=/tmp/p.md                write the section somewhere else
#   RCON=PATH RCON_REV=REV             another rcon binary, and what to call it
#
# Every (tool, count) run gets a fresh world of its own: a "node" network
# namespace (`ip netns add rcon-bnet-PID-TOOL-N`), N container network
# namespaces (files under /tmp/rcon-bnet-PID, not timed), and private state
# dirs. The tool runs inside the node (the whole timing loop runs under
# `nsenter --net`), so its bridge, veths, iptables/nftables rules and sysctls
# live there; the machine's root network namespace is never touched. All of
# it is removed at the end and on failure.
#
# Raw per-call times (microseconds, in call order) go to
# hack/.cache/bench/net/TOOL-N-{setup,teardown}.us, the section to
# hack/.cache/bench/net.md.
# shellcheck disable=SC2016 # backquotes in printf formats are Markdown code
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

NETAVARK=${NETAVARK:-/usr/lib/podman/netavark}
CNI_DIR=${CNI_DIR:-/usr/lib/cni}
RCON=${RCON:-$repo/target/release/rcon}
SUBNET=10.88.0.0/16
GATEWAY=10.88.0.1
NET=bench # the network's name, for every tool

# --- inside a node: the timed loops ------------------------------------------
# Runs as `bench-net.sh __inner TOOL N DIR` under nsenter --net=NODE. DIR/cns
# holds the container netns files c1..cN. Writes DIR/setup.us,
# DIR/teardown.us (one duration a line, in call order) and DIR/info.

netavark_prepare() {
	export NETAVARK_FW=iptables # firewalld is not running; say so, don't probe
	mkdir -p "$DIR/netavark" "$DIR/opts"
	local i k
	# The options Podman would pass (netavark_opts, hack/lib/benchworld.sh).
	for ((i = 1; i <= N; i++)); do
		k=$((i + 1))
		netavark_opts "bench$i" "10.88.$((k / 256)).$((k % 256))" "$NET" "$SUBNET" "$GATEWAY" podman-bench >"$DIR/opts/c$i.json"
	done
}
netavark_setup() { "$NETAVARK" --config "$DIR/netavark" setup "$DIR/cns/c$1" <"$DIR/opts/c$1.json"; }
netavark_teardown() { "$NETAVARK" --config "$DIR/netavark" teardown "$DIR/cns/c$1" <"$DIR/opts/c$1.json"; }
netavark_finish() { :; }

cni_prepare() {
	export CNI_PATH=$CNI_DIR CNI_IFNAME=eth0
	printf '{"cniVersion":"1.0.0","name":"%s","type":"bridge","bridge":"cni-bench",' "$NET" >"$DIR/cni.json"
	printf '"isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"%s","gateway":"%s","dataDir":"%s"}}\n' \
		"$SUBNET" "$GATEWAY" "$DIR/cni-ipam" >>"$DIR/cni.json"
}
cni_setup() { CNI_COMMAND=ADD CNI_CONTAINERID=bench$1 CNI_NETNS=$DIR/cns/c$1 "$CNI_DIR/bridge" <"$DIR/cni.json"; }
cni_teardown() { CNI_COMMAND=DEL CNI_CONTAINERID=bench$1 CNI_NETNS=$DIR/cns/c$1 "$CNI_DIR/bridge" <"$DIR/cni.json"; }
cni_finish() { :; }

rcon_prepare() {
	export RCON_ROOT=$DIR/rcon/run RCON_DATA_ROOT=$DIR/rcon/lib RCON_NETNS_DIR=$DIR/rcon/netns
	mkdir -p "$RCON_ROOT" "$RCON_DATA_ROOT" "$RCON_NETNS_DIR"
	# Creating the network (bridge, per-network firewall rules) is not part of
	# a container's attach: timed once, reported as context.
	local t0 t1
	t0=$EPOCHREALTIME
	# DNS off, as in netavark's options: no resolver reloading its records at each attach.
	"$RCON" network create --disable-dns --subnet "$SUBNET" "$NET" >"$DIR/out" 2>"$DIR/err" || fail "rcon network create" $?
	t1=$EPOCHREALTIME
	echo "create_us=$((${t1//[.,]/} - ${t0//[.,]/}))" >>"$DIR/info"
}
rcon_setup() { "$RCON" network attach --netns "$DIR/cns/c$1" "$NET"; }
rcon_teardown() { "$RCON" network detach --netns "$DIR/cns/c$1" "$NET"; }
rcon_finish() { "$RCON" network rm "$NET" >/dev/null 2>"$DIR/err" || fail "rcon network rm" $?; }

fail() { # fail WHAT STATUS: the call's stderr, and out
	{
		echo "bench-net: $TOOL: $1 failed (exit status $2) with $N containers in the run:"
		sed 's/^/  | /' "$DIR/err" | head -20
	} >&2
	exit 1
}

# (count_rules: hack/lib/benchworld.sh)

inner() {
	TOOL=$1 N=$2 DIR=$3
	local i t0 t1 err=$DIR/err
	local -a su=() td=()
	: >"$DIR/info"
	"${TOOL}_prepare"
	for ((i = 1; i <= N; i++)); do
		t0=$EPOCHREALTIME
		"${TOOL}_setup" "$i" >"$DIR/out" 2>"$err" || fail "setup of container $i" $?
		t1=$EPOCHREALTIME
		su+=($((${t1//[.,]/} - ${t0//[.,]/})))
	done
	printf '%s\n' "${su[@]}" >"$DIR/setup.us"
	# Not timed: did every setup leave a veth here, and does a packet pass?
	local veths ping=ok
	veths=$(ip -o link show type veth | wc -l)
	nsenter --net="$DIR/cns/c1" busybox ping -q -c1 -W2 "$GATEWAY" >/dev/null 2>&1 || ping=failed
	{
		echo "veths_after_setup=$veths"
		echo "rules_after_setup=$(count_rules)"
		echo "ping=$ping"
	} >>"$DIR/info"
	if ((veths != N)); then
		echo "bench-net: $TOOL: $veths veths in the node after $N setups (expected $N)" >&2
		exit 1
	fi
	for ((i = 1; i <= N; i++)); do
		t0=$EPOCHREALTIME
		"${TOOL}_teardown" "$i" >"$DIR/out" 2>"$err" || fail "teardown of container $i" $?
		t1=$EPOCHREALTIME
		td+=($((${t1//[.,]/} - ${t0//[.,]/})))
	done
	printf '%s\n' "${td[@]}" >"$DIR/teardown.us"
	{
		echo "veths_after_teardown=$(ip -o link show type veth | wc -l)"
		echo "rules_after_teardown=$(count_rules)"
	} >>"$DIR/info"
	"${TOOL}_finish"
}

# shellcheck source=SCRIPTDIR/lib/benchworld.sh
. "$repo/hack/lib/benchworld.sh" # the inner run too: netavark_opts, count_rules
bench_dispatch "$@"

# --- outside: worlds, runs, report -------------------------------------------

bench_start bench-net "$@"
COUNTS=${BENCH_NET_COUNTS:-$([[ -n $quick ]] && echo "1 20 50" || echo "1 200 1000")}
TOOLS=${BENCH_NET_TOOLS:-netavark cni rcon}
SETTLE=${BENCH_NET_SETTLE:-2}
CACHE=$repo/hack/.cache/bench
RAW=$CACHE/net
BENCH_TAG=bench-net

# shellcheck disable=SC2086 # one count a word
check_counts bench-net BENCH_NET_COUNTS 60000 ": one /16" $COUNTS
for t in $TOOLS; do
	case $t in netavark | cni | rcon) ;; *)
		echo "bench-net: unknown tool '$t' in BENCH_NET_TOOLS (netavark, cni, rcon)" >&2
		exit 2
		;;
	esac
done
bench_need ip nsenter unshare nft iptables busybox split

declare -A skipped=() # tool -> why it has no rows
need_tool() { # need_tool TOOL: true when it can run, else note why not
	case $1 in
	netavark) [[ -x $NETAVARK ]] || skipped[netavark]="$NETAVARK not found (hack/install-deps.sh --bench)" ;;
	cni) [[ -x $CNI_DIR/bridge && -x $CNI_DIR/host-local ]] ||
		skipped[cni]="$CNI_DIR/bridge or host-local not found (hack/install-deps.sh --bench)" ;;
	rcon)
		if [[ ! -x $RCON ]]; then
			skipped[rcon]="rcon binary not found at $RCON (make build)"
		elif ! "$RCON" network attach --help >/dev/null 2>&1; then
			skipped[rcon]="rcon network attach not available in this build ($RCON)"
		fi
		;;
	esac
	[[ -z ${skipped[$1]:-} ]]
}
pick_tools

# --- the bench world and its cleanup ------------------------------------------
# Names carry our pid, so that a later run can tell a crashed run's leftovers
# (pid gone) from another run going on now (hack/lib/benchworld.sh).
PREFIX=rcon-bnet
WORLD=/tmp/$PREFIX-$$
NETNS_RUN=/var/run/netns

bench_world_up

# make_containers DIR N (hack/lib/benchworld.sh): N netns files DIR/c1..cN.

# run_one TOOL N: one fresh node and N fresh containers; the timed loops run
# inside the node. Raw times to $RAW, context to $WORLD/TOOL-N/info.
run_one() {
	local tool=$1 n=$2 dir=$WORLD/$1-$2 node=$PREFIX-$$-$1-$2 t0 t1 t2
	mkdir -p "$dir"
	ip netns add "$node"
	netns_baseline "$node"
	ip -n "$node" link set lo up
	t0=$EPOCHREALTIME
	make_containers "$dir/cns" "$n"
	t1=$EPOCHREALTIME
	echo "bench-net: $tool, $n container(s)..."
	# In the background and waited for, so that a signal to this script is
	# handled at once (cleanup stops the loop) rather than after the run.
	nsenter --net="$NETNS_RUN/$node" -- "$self" __inner "$tool" "$n" "$dir" &
	inner_pid=$!
	if ! wait "$inner_pid"; then
		inner_pid=''
		echo "bench-net: $tool with $n containers failed; no figures written" >&2
		exit 1
	fi
	inner_pid=''
	t2=$EPOCHREALTIME
	{
		echo "netns_us=$((${t1//[.,]/} - ${t0//[.,]/}))"
		echo "run_us=$((${t2//[.,]/} - ${t1//[.,]/}))"
	} >>"$dir/info"
	cp "$dir/setup.us" "$RAW/$tool-$n-setup.us"
	cp "$dir/teardown.us" "$RAW/$tool-$n-teardown.us"
	cp "$dir/info" "$RAW/$tool-$n.info"
	# Remove this run's world before the next: containers, then the node.
	umount "$dir/cns"/c* 2>/dev/null || unmount_below "$dir/cns"
	unmount_below "$dir"
	rm -rf --one-file-system "$dir"
	ip netns delete "$node"
	sleep "$SETTLE" # the kernel frees namespaces in the background
}

# stats FILE: "median p99 first 10th last med(5th-15th) med(last 11)" in µs
# (p99 by nearest rank; "-" where the run is too short to say). One call on a
# 2-core VM can be off by a few ms (a kernel worker, a timer), so "the 10th"
# and "the last" are also given as the median of the 11 calls around them.
stats() {
	local f=$1 sorted
	sorted=$(median_p99 "$f")
	local med10=- medl10=-
	if (($(wc -l <"$f") >= 30)); then
		med10=$(sed -n 5,15p "$f" | sort -n | awk '{a[NR] = $1} END {print a[6]}')
		medl10=$(tail -n 11 "$f" | sort -n | awk '{a[NR] = $1} END {print a[6]}')
	fi
	awk -v s="$sorted" -v m10="$med10" -v l10="$medl10" '{a[NR] = $1}
		END {print s, a[1], (NR >= 10 ? a[10] : "-"), a[NR], m10, l10}' "$f"
}

bench_runs_begin
summary=$WORLD/summary.tsv
: >"$summary"
rm -f "$RAW"/*.us "$RAW"/*.info
for n in $COUNTS; do
	for tool in "${tools[@]}"; do
		run_one "$tool" "$n"
		for phase in setup teardown; do
			# shellcheck disable=SC2046,SC2183 # word splitting of the stats is wanted: they are the other 6 fields
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$phase" \
				$(stats "$RAW/$tool-$n-$phase.us") >>"$summary"
		done
	done
done
bench_runs_end

# --- the report ---------------------------------------------------------------
declare -A name=([netavark]="netavark 1.4" [cni]="CNI bridge" [rcon]="rcon")
runinfo() { # runinfo TOOL N KEY
	sed -n "s/^$3=//p" "$RAW/$1-$2.info"
}

# table PHASE: one row per (N, tool); ratios of medians to netavark and CNI
# at the same N.
table() {
	local phase=$1
	if [[ $phase == setup ]]; then
		echo "| containers | tool | median ms | p99 ms | ÷ netavark | ÷ CNI | 10th ms | last ms | last ÷ 10th, medians of 11 around each |"
		echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
	else
		echo "| containers | tool | median ms | p99 ms | ÷ netavark | ÷ CNI | first ms | last ms |"
		echo "|---:|---|---:|---:|---:|---:|---:|---:|"
	fi
	awk -F'\t' -v phase="$phase" -v names="netavark=${name[netavark]};cni=${name[cni]};rcon=${name[rcon]}" '
		function ms(v) {
			if (v == "-") return "—"
			v /= 1000
			return sprintf(v < 10 ? "%.2f" : "%.1f", v)
		}
		function ratio(a, b) { return b == "" || b == 0 ? "—" : sprintf("%.2f×", a / b) }
		BEGIN {
			k = split(names, kv, ";")
			for (i = 1; i <= k; i++) { split(kv[i], p, "="); label[p[1]] = p[2] }
		}
		$3 == phase {
			row[++nr] = $0
			med[$1, $2] = $4
		}
		END {
			for (i = 1; i <= nr; i++) {
				split(row[i], f, "\t")
				line = sprintf("| %s | %s | %s | %s | %s | %s |", f[2], label[f[1]], ms(f[4]), ms(f[5]),
					ratio(f[4], med["netavark", f[2]]), ratio(f[4], med["cni", f[2]]))
				if (phase == "setup")
					line = line sprintf(" %s | %s | %s |", ms(f[7]), ms(f[8]),
						f[9] == "-" ? "—" : ratio(f[10], f[9]))
				else
					line = line sprintf(" %s | %s |", ms(f[6]), ms(f[8]))
				print line
			}
		}' "$summary"
}

context_table() {
	echo "| containers | tool | making the netns | whole run | veths after setups | firewall rules after setups / after teardowns | ping container 1 → gateway |"
	echo "|---:|---|---:|---:|---:|---:|---|"
	local n tool
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			printf '| %s | %s | %s | %s | %s | %s / %s | %s |\n' "$n" "${name[$tool]}" \
				"$(awk -v v="$(runinfo "$tool" "$n" netns_us)" -v n="$n" \
					'BEGIN {printf "%.0f ms (%.2f ms each)", v / 1e3, v / 1e3 / n}')" \
				"$(awk -v v="$(runinfo "$tool" "$n" run_us)" 'BEGIN {printf "%.1f s", v / 1e6}')" \
				"$(runinfo "$tool" "$n" veths_after_setup)" \
				"$(runinfo "$tool" "$n" rules_after_setup)" "$(runinfo "$tool" "$n" rules_after_teardown)" \
				"$(runinfo "$tool" "$n" ping)"
		done
	done
}

# The goal of rcon issue 4, checked against the largest run.
goal_lines() {
	[[ -z ${skipped[rcon]:-} && " ${tools[*]} " == *" rcon "* ]] || return 0
	local big
	big=$(awk -F'\t' '$1 == "rcon" && $3 == "setup" {n = $2 > n ? $2 : n} END {print n}' "$summary")
	awk -F'\t' -v n="$big" '
		$1 == "rcon" && $2 == n && $3 == "setup" {s = $4; t10 = $7; last = $8; f10 = $9; l10 = $10}
		$1 == "rcon" && $2 == n && $3 == "teardown" {d = $4}
		END {
			printf "- rcon with %d containers: setup median %.2f ms (goal ≤ 5: %s), ", n, s / 1000, s <= 5000 ? "met" : "not met"
			printf "teardown median %.2f ms (goal ≤ 5: %s)", d / 1000, d <= 5000 ? "met" : "not met"
			if (f10 != "-")
				printf ", the last setup %.2f× the 10th, each the median of the 11 setups around it (goal ≤ 1.2×: %s)", l10 / f10, l10 <= 1.2 * f10 ? "met" : "not met"
			if (t10 != "-")
				printf "; single calls: the last %.2f× the 10th", last / t10
			print "."
		}' "$summary"
}

# Notes that depend on what was seen.
seen_notes() {
	local n tool left
	for n in $COUNTS; do
		for tool in "${tools[@]}"; do
			left=$(runinfo "$tool" "$n" veths_after_teardown)
			if [[ $left != 0 ]]; then
				echo "- ${name[$tool]} left $left veth(s) in the node after its $n teardowns (removed later with the container's netns): its teardown figure does not include deleting them."
			fi
			if [[ $(runinfo "$tool" "$n" ping) != ok ]]; then
				echo "- ${name[$tool]} with $n containers: container 1 could not ping the gateway $GATEWAY after the setups."
			fi
		done
	done
	for tool in "${!skipped[@]}"; do
		echo "- ${name[$tool]}: not measured: ${skipped[$tool]}."
	done
}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rcon_rev=${RCON_REV:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)}
cni_ver=$(dpkg-query -W -f='${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
netavark_ver=$("$NETAVARK" --version 2>/dev/null || echo "netavark unknown")
rcon_create=''
if [[ " ${tools[*]} " == *" rcon "* ]]; then
	rcon_create=$(for n in $COUNTS; do runinfo rcon "$n" create_us; done | sort -n |
		awk '{a[NR] = $1} END {if (NR) printf "%.2f", a[int((NR + 1) / 2)] / 1000}')
fi

section=$CACHE/net.md
{
	cat <<-EOF
		## Network attach and detach: rcon, netavark and the CNI bridge plugin

		Generated by [hack/bench-net.sh](../hack/bench-net.sh) (run by \`make bench\`).

		- date: $(date -u '+%Y-%m-%d %H:%M UTC'), whole bench $total_s s; kernel $(uname -r); ${cpu:-unknown CPU} × $(nproc)
		- load average (1, 5, 15 min) before: $load_before, after: $load_after
		- $netavark_ver (Debian, iptables driver, \`NETAVARK_FW=iptables\`); CNI plugins $cni_ver (Debian); $(iptables --version); rcon $rcon_rev (release build)

		What is timed: one container joining a bridge network, and leaving it.
		Each tool does the same work for a container: a veth pair with one end
		as \`eth0\` in the container's netns and the other on the network's bridge
		(made on first use), the container's address from 10.88.0.0/16, its
		default route via 10.88.0.1, and the network's NAT/forwarding rules.

		- **netavark**: \`netavark --config DIR setup NETNS < options.json\` and
		  \`teardown\`, with the options Podman passes (one network, driver
		  bridge, interface \`podman-bench\`, DNS off). netavark 1.4 does no IPAM
		  of its own: the script hands each container its static address, as
		  Podman would. The first setup also makes the bridge and the network's
		  iptables chains, and the last teardown removes them.
		- **CNI bridge**: \`/usr/lib/cni/bridge\` called directly with
		  \`CNI_COMMAND=ADD\`/\`DEL\` and the conf on stdin (cniVersion 1.0.0,
		  bridge \`cni-bench\`, \`isGateway\`, \`ipMasq\`, \`host-local\` IPAM with
		  its data dir in the bench's temp dir); it calls \`host-local\` itself.
		  \`ipMasq\` adds a chain and two iptables rules per container.
		- **rcon**: \`rcon network attach --netns NETNS bench\` and \`rcon network
		  detach\`, after \`rcon network create --disable-dns --subnet 10.88.0.0/16 bench\`
		  (DNS off, as for netavark)
		  (not timed per container: creating the network, its bridge and its
		  rules happens once${rcon_create:+, and took $rcon_create ms}).

		How: every (tool, containers) run starts from nothing: a fresh node
		network namespace, in which the tool and the whole timing loop run
		(\`nsenter --net\`), and N fresh container namespaces made beforehand
		(not timed). Then N setups one after another, each one process started
		from bash and timed by the wall clock around it (\`\$EPOCHREALTIME\`),
		so the network grows to N containers; then N teardowns in the same
		order. Every call must succeed, or the bench stops without figures.
		Median and p99 (nearest rank) are over the N calls of a run; the
		ratios divide medians at the same N. Raw times:
		\`hack/.cache/bench/net/\`.

		### Setup (attach)

	EOF
	table setup
	cat <<-'EOF'

		### Teardown (detach)

	EOF
	table teardown
	cat <<-'EOF'

		### Context (not compared)

		Making the container namespaces (`unshare --net=FILE true` each, not
		timed in the rows above), the whole run of setups and teardowns with
		its checks, and what the node held after all N setups: veths, firewall
		rules (`nft list ruleset`, which shows the iptables-nft rules too), and
		whether container 1 could reach the gateway.

	EOF
	context_table
	cat <<-'EOF'

		### Reading the figures

		- Every row pays for starting a process (a few ms for a Rust or Go
		  binary on this machine: see `/bin/true` above) on top of its own work;
		  the goal for rcon is ≤ 5 ms median setup and teardown, with the last
		  setup of a 1000-container network no slower than 1.2× the 10th.
		- Growth with N shows up in "last ÷ 10th": a tool whose work per
		  container depends on what is already there (rules listed or rewritten,
		  locks held longer) gets slower as the network fills. Single calls on
		  this VM jump by a few ms now and then, so that column compares the
		  median of the 5th to 15th setups with the median of the last 11.
		- The kernel's own work per bridge port grows a little with the number
		  of ports (the bridge walks its port and FDB lists when a port joins),
		  for every tool alike.
		- Deleting a veth costs the kernel about 20 ms on this machine however
		  it is asked, so a teardown that deletes the veth synchronously cannot
		  be much faster than that; one that leaves it to the container's netns
		  removal can, and the notes below say when a tool did.
		- The 1-container row includes whatever a tool does on first use (the
		  bridge, the network's chains), so it is not a steady-state figure.
		- One run, sequential, on a shared 2-core VM: compare rows within a
		  table, not with other days.

	EOF
	notes=$(goal_lines; seen_notes)
	if [[ -n $notes ]]; then
		echo "Notes from this run:"
		echo
		printf '%s\n' "$notes"
	fi
} >"$section.new"
bench_section_out bench-net "$section"
