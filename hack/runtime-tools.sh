#!/usr/bin/env bash
# Run the OCI runtime-tools validation suite (github.com/opencontainers/runtime-tools,
# validation/*.t) against rcon and runc side by side and print one table.
#
# Usage (as root):
#   hack/runtime-tools.sh [--markdown] [--timeout SECS] [--logs DIR] [--only REGEX]
#                         RUNTIME_TOOLS_DIR [RCON_BINARY [RUNC_BINARY]]
#
#   RUNTIME_TOOLS_DIR  a runtime-tools checkout, built with
#                        GOFLAGS=-mod=vendor GOPROXY=off make runtimetest validation-executables
#                      (docs/CONFORMANCE.md says which commit; the script builds it itself
#                      when runtimetest or the .t files are missing, installing Debian's
#                      golang-go with apt-get if `go` is not there).
#   RCON_BINARY        default: target/release/rcon (relative to the rcon checkout)
#   RUNC_BINARY        default: `runc` from PATH
#   --markdown         print the table as markdown
#   --timeout SECS     per test and runtime (default 60)
#   --logs DIR         keep every test's stdout (TAP) and stderr in DIR/<runtime>/<test>.{tap,err}
#                      (default: a fresh directory under /tmp, printed at the end)
#   --only REGEX       run only tests whose name matches REGEX (grep -E)
#
# How runtime-tools is driven: every validation/<name>/<name>.t is a Go program
# that writes TAP on stdout. It picks the runtime from the RUNTIME environment
# variable (util.RuntimeCommand, resolved with exec.LookPath, so a path works),
# calls it with the runc-style CLI (create --bundle B [--pid-file F] ID, start,
# state, kill ID SIG, delete [--force] ID) and no global flags. It must run from
# the checkout root: it untars ./rootfs-amd64.tar.gz into a bundle under $TMPDIR
# and copies ./runtimetest (the in-container checker) into it. It needs root.
#
# So that the runs cannot disturb anything else on the machine:
#   - each runtime is called through a small wrapper that adds a private state
#     root (runc --root, rcon --root/--data-root/--netns-dir under one temp dir),
#     so `list` shows exactly the containers the suite made; after every test
#     any container left in that root is deleted with `delete --force`, and the
#     script fails loudly if one survives;
#   - the whole suite runs in its own network and mount namespace
#     (unshare --net --mount): some tests take the network namespace out of the
#     config (the container then shares the runner's) or set net.* sysctls, and
#     none of that may reach the machine's root network namespace. No test sends
#     traffic anywhere. That namespace gets lo and one veth pair (rt-eth0/1),
#     because linux_cgroups_network indexes the second interface it finds.
#
# What "pass" means: a test passes for a runtime when the .t program exited 0
# within the timeout and its stdout is either
#   (a) TAP with plan lines "1..M" (some tests print one TAP document per case;
#       M is then the sum of their plans), no top-level "not ok" line, and
#       exactly M top-level "ok" lines ("ok N # SKIP ..." counts as ok: skipped
#       subtests are fine), or
#   (b) empty of TAP: the *_fail tests (process_capabilities_fail,
#       process_rlimits_fail) print nothing and exit 0 when the runtime refused
#       the bad config, and exit 1 with a message when it did not.
# Otherwise the cell says "fail K/M" (K top-level "ok" lines of M planned, or of
# the "ok"+"not ok" lines seen when there is no plan; " exit E" is added when
# the program exited E != 0, e.g. after a util.Fatal), "fail (exit E, no TAP)"
# when the test failed before any ok/not ok line (e.g. create refused the
# config: see the .err log), or "timeout". Nested TAP (runtimetest's own
# output embedded in YAML diagnostics) is indented and not counted.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

markdown=0
timeout_s=60
logs=""
only=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --markdown) markdown=1; shift ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --logs) logs="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        --) shift; break ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -ge 1 && $# -le 3 ]] || usage

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rt_dir="$(cd "$1" && pwd)"
rcon_bin="${2:-$here/target/release/rcon}"
runc_bin="${3:-$(command -v runc || true)}"

[[ $EUID -eq 0 ]] || { echo "runtime-tools.sh: needs root" >&2; exit 1; }
[[ -x "$rcon_bin" ]] || { echo "runtime-tools.sh: no rcon binary at $rcon_bin (cargo build --release)" >&2; exit 1; }
[[ -n "$runc_bin" && -x "$runc_bin" ]] || { echo "runtime-tools.sh: no runc (apt-get install runc, or pass its path)" >&2; exit 1; }
rcon_bin="$(readlink -f "$rcon_bin")"
runc_bin="$(readlink -f "$runc_bin")"

# Build the suite if needed (not part of CI; golang-go comes from Debian).
shopt -s nullglob
tests=("$rt_dir"/validation/*/*.t)
if [[ ! -x "$rt_dir/runtimetest" || ${#tests[@]} -eq 0 ]]; then
    if ! command -v go >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go >&2
    fi
    (cd "$rt_dir" && GOFLAGS=-mod=vendor GOPROXY=off make runtimetest validation-executables) >&2
    tests=("$rt_dir"/validation/*/*.t)
fi
[[ ${#tests[@]} -gt 0 ]] || { echo "runtime-tools.sh: no validation/*/*.t in $rt_dir" >&2; exit 1; }

# Re-enter in a private network + mount namespace (see the header).
if [[ "${RT_SUITE_IN_NS:-}" != 1 ]]; then
    args=(--timeout "$timeout_s")
    [[ $markdown -eq 1 ]] && args+=(--markdown)
    [[ -n "$logs" ]] && args+=(--logs "$logs")
    [[ -n "$only" ]] && args+=(--only "$only")
    RT_SUITE_IN_NS=1 exec unshare --net --mount --propagation private -- \
        "$0" "${args[@]}" "$rt_dir" "$rcon_bin" "$runc_bin"
fi

# From here on nothing may run in the machine's own network namespace.
if [[ "$(readlink /proc/self/ns/net)" == "$(readlink /proc/1/ns/net)" ]]; then
    echo "runtime-tools.sh: still in the root network namespace; refusing to run" >&2
    exit 1
fi
# linux_cgroups_network takes the first two interfaces it sees (lo and what it
# takes for eth0): give this namespace a second one, a veth pair that lives
# and dies with it.
ip link set lo up
ip link add rt-eth0 type veth peer name rt-eth1

work="$(mktemp -d /tmp/rcon-runtime-tools.XXXXXX)"
[[ -n "$logs" ]] || logs="$work/logs"
# Hosts that systemd lays out as v1 or hybrid mount net_cls,net_prio; this VM
# does not, though its kernel has both. Mount the hierarchy in this script's
# private mount namespace (never under the host's /sys/fs/cgroup), so that
# both runtimes can apply linux.resources.network. It goes with the namespace
# once the containers' groups are gone.
if awk '$1 == "net_cls" && $4 == 1 { f = 1 } END { exit !f }' /proc/cgroups \
    && ! grep -q ' - cgroup [^ ]* [^ ]*net_cls' /proc/self/mountinfo; then
    mkdir -p "$work/cgroup/net_cls,net_prio"
    mount -t cgroup -o net_cls,net_prio rcon-rt "$work/cgroup/net_cls,net_prio" \
        || echo "runtime-tools.sh: could not mount net_cls,net_prio; the network tests will fail" >&2
fi
mkdir -p "$logs/rcon" "$logs/runc" "$work/bin"
# Like /tmp: a container root mapped to another uid (linux_uid_mappings) must
# be able to reach its bundle, as it can under /tmp.
chmod 0755 "$work"
export TMPDIR="$work/tmp"
mkdir -m 1777 "$TMPDIR"

# Wrappers: private state roots, otherwise the CLI runtime-tools expects.
cat >"$work/bin/rcon" <<EOF
#!/bin/sh
exec "$rcon_bin" --root "$work/state/rcon" --data-root "$work/state/rcon-data" --netns-dir "$work/state/rcon-netns" "\$@"
EOF
cat >"$work/bin/runc" <<EOF
#!/bin/sh
exec "$runc_bin" --root "$work/state/runc" "\$@"
EOF
chmod +x "$work/bin/rcon" "$work/bin/runc"
mkdir -p "$work/state/rcon" "$work/state/rcon-data" "$work/state/rcon-netns" "$work/state/runc"

# Delete whatever a test left in a runtime's private root; print the ids.
sweep() {
    local rt="$1" id ids
    ids="$("$work/bin/$rt" list -q 2>/dev/null || true)"
    for id in $ids; do
        "$work/bin/$rt" kill "$id" KILL >/dev/null 2>&1 || true
        "$work/bin/$rt" delete --force "$id" >/dev/null 2>&1 || true
        echo "$id"
    done
}

# Detach every mount below $1 (in this script's own mount namespace).
unmount_under() {
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v w="$1" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

cleanup() {
    local rt left
    for rt in rcon runc; do
        sweep "$rt" >/dev/null
        left="$("$work/bin/$rt" list -q 2>/dev/null || true)"
        [[ -z "$left" ]] || echo "runtime-tools.sh: $rt still lists: $left" >&2
    done
    # The suite's cgroupsPaths (/cgrouptest, testdir/cgrouptest/container):
    # a runtime whose create failed may leave their groups behind (runc does,
    # under every hierarchy). Remove the empty ones, deepest first.
    local mnt
    while read -r mnt; do
        find "$mnt/cgrouptest" "$mnt/testdir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done < <(awk '{ split($0, p, " - "); split(p[2], f, " ") } f[1] ~ /^cgroup2?$/ { print $5 }' /proc/self/mountinfo)
    # A container without a mount namespace of its own (linux_ns_itype) mounts
    # /proc, /sys, ... into its bundle in *our* mount namespace: detach whatever
    # is mounted under the work dir before removing it, and never cross into
    # another filesystem while removing.
    unmount_under "$work/"
    rm -rf --one-file-system "${work:?}/tmp" "${work:?}/bin" "${work:?}/cgroup" 2>/dev/null || true
    # The state roots go when they are empty (nothing left behind).
    find "$work/state" -depth -type d -empty -delete 2>/dev/null || true
    rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

# Run one test for one runtime; print its cell.
run_one() {
    local rt="$1" t="$2" name="$3" rc=0 plan oks notoks
    local out="$logs/$rt/$name.tap" err="$logs/$rt/$name.err"
    (cd "$rt_dir" && RUNTIME="$work/bin/$rt" timeout -k 5 "$timeout_s" "$t" >"$out" 2>"$err") || rc=$?
    local swept
    swept="$(sweep "$rt")"
    [[ -z "$swept" ]] || echo "# swept after the test: $swept" >>"$err"
    # Bundles the test could not remove (mounts of a container that shared
    # our mount namespace): detach, then remove without crossing filesystems.
    unmount_under "$TMPDIR/"
    rm -rf --one-file-system "${TMPDIR:?}"/* 2>/dev/null || true
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then echo "timeout"; return; fi
    # Some tests print one TAP document per case: the plans add up.
    plan="$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$out" | awk '{ s += $1; n++ } END { if (n) print s }')"
    oks="$(grep -c '^ok' "$out" || true)"
    notoks="$(grep -c '^not ok' "$out" || true)"
    if [[ $rc -eq 0 && $oks -eq 0 && $notoks -eq 0 && -z "$plan" ]]; then
        # The *_fail tests print nothing and exit 0 when create was refused.
        echo "pass"
    elif [[ $oks -eq 0 && $notoks -eq 0 && ( -z "$plan" || $rc -ne 0 ) ]]; then
        echo "fail (exit $rc, no TAP)"
    elif [[ $rc -eq 0 && -n "$plan" && $notoks -eq 0 && $oks -eq $plan ]]; then
        echo "pass"
    else
        local cell="fail $oks/${plan:-$((oks + notoks))}"
        [[ $rc -eq 0 ]] || cell+=" exit $rc"
        echo "$cell"
    fi
}

rows=()
n=0 rcon_pass=0 runc_pass=0
for t in "${tests[@]}"; do
    name="$(basename "$t" .t)"
    if [[ -n "$only" ]] && ! grep -Eq -- "$only" <<<"$name"; then continue; fi
    r1="$(run_one rcon "$t" "$name")"
    r2="$(run_one runc "$t" "$name")"
    n=$((n + 1))
    [[ "$r1" == pass ]] && rcon_pass=$((rcon_pass + 1))
    [[ "$r2" == pass ]] && runc_pass=$((runc_pass + 1))
    rows+=("$name|$r1|$r2")
    echo "  $name: rcon $r1, runc $r2" >&2
done

runc_version="$("$runc_bin" --version | head -n1)"
if [[ $markdown -eq 1 ]]; then
    echo "| test | rcon | runc |"
    echo "|---|---|---|"
    for r in "${rows[@]}"; do
        IFS='|' read -r a b c <<<"$r"
        echo "| $a | $b | $c |"
    done
    echo
else
    printf '%-36s %-22s %-22s\n' test rcon runc
    for r in "${rows[@]}"; do
        IFS='|' read -r a b c <<<"$r"
        printf '%-36s %-22s %-22s\n' "$a" "$b" "$c"
    done
fi
echo "rcon passes $rcon_pass of $n, runc passes $runc_pass of $n ($runc_version; runtime-tools $(git -C "$rt_dir" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "TAP and stderr of every run: $logs" >&2
