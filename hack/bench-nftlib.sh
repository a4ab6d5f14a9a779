#!/usr/bin/env bash
# The cost of one nftables change, the way rcon makes it now (libnftables
# in-process, a fresh context per call) against the way it did (an `nft -f -`
# child): N one-element adds to a set each way, in a network namespace of its
# own (`ip netns add rcon-bnftlib-PID`, removed at the end and on failure).
# Then the same through rcon: R rounds of `network attach` (anti-spoofing
# element, a TCP and a UDP port) and `network detach`, alternately with the
# library and with RCON_NFT_PROGRAM=1 (the `nft` program, as before issue
# 22), in a node namespace of its own with its state on tmpfs.
# Prints the means; docs/PERFORMANCE.md quotes them with the load.
#
#   hack/bench-nftlib.sh          (N=500 in-process, 200 spawned; R=30)
#   BENCH_NFTLIB_N=1000 BENCH_NFTLIB_ROUNDS=50 RCON=PATH hack/bench-nftlib.sh
#
# Needs gcc and libnftables1 (the C caller declares the five functions it
# uses, so no -dev package).
set -euo pipefail

n=${BENCH_NFTLIB_N:-500}
rounds=${BENCH_NFTLIB_ROUNDS:-30}
rcon=${RCON:-$(cd "$(dirname "$0")/.." && pwd)/target/release/rcon}
[[ -x $rcon ]] || { echo "bench-nftlib: $rcon not built (cargo build --release)" >&2; exit 1; }
spawned=$(( n * 2 / 5 ))
ns=rcon-bnftlib-$$
dir=$(mktemp -d /tmp/rcon-bnftlib-XXXXXX)
lib=$(ldconfig -p | awk '/libnftables\.so\.1 /{print $NF; exit}')
[[ -n $lib ]] || { echo "bench-nftlib: libnftables.so.1 not found (install libnftables1)" >&2; exit 1; }
state=$(mktemp -d -p /dev/shm rcon-bnftlib-XXXXXX)
cleanup() {
	ip netns delete "$ns" 2>/dev/null || true
	ip netns delete "$ns-c" 2>/dev/null || true
	rm -rf "$dir" "$state"
}
trap cleanup EXIT

cat >"$dir/b.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
struct nft_ctx;
struct nft_ctx *nft_ctx_new(unsigned flags);
void nft_ctx_free(struct nft_ctx *ctx);
int nft_ctx_buffer_output(struct nft_ctx *ctx);
int nft_ctx_buffer_error(struct nft_ctx *ctx);
int nft_run_cmd_from_buffer(struct nft_ctx *ctx, const char *buf);
static double ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    char cmd[128];
    double t0 = ms();
    for (int i = 0; i < n; i++) {
        struct nft_ctx *c = nft_ctx_new(0);
        nft_ctx_buffer_output(c);
        nft_ctx_buffer_error(c);
        snprintf(cmd, sizeof cmd, "add element ip t s { 10.1.%d.%d }", i / 250, i % 250 + 1);
        if (nft_run_cmd_from_buffer(c, cmd) != 0) { fprintf(stderr, "add %d failed\n", i); return 1; }
        nft_ctx_free(c);
    }
    printf("in-process (libnftables): %.3f ms per one-element add, %d adds\n", (ms() - t0) / n, n);
    return 0;
}
C
gcc -O2 -o "$dir/b" "$dir/b.c" "$lib"

ip netns add "$ns"
nsenter --net="/var/run/netns/$ns" sh -c "
    set -e
    nft add table ip t
    nft add set ip t s '{ type ipv4_addr; }'
    '$dir/b' $n
    t0=\$(date +%s%N)
    for i in \$(seq 1 $spawned); do echo \"add element ip t s { 10.9.\$((i / 250)).\$((i % 250 + 1)) }\" | nft -f -; done
    t1=\$(date +%s%N)
    awk -v d=\$((t1 - t0)) -v n=$spawned 'BEGIN { printf \"spawned (nft -f -): %.3f ms per one-element add, %d adds\\n\", d / n / 1e6, n }'
"
# Through rcon: attach and detach, library against program, alternately.
export RCON_ROOT=$state/run RCON_NETNS_DIR=$state/netns RCON_DATA_ROOT=$state/lib
node() { nsenter --net="/var/run/netns/$ns" "$@"; }
ip netns add "$ns-c"
node "$rcon" network create --subnet 10.98.0.0/24 benchnft >/dev/null
declare -A attach=([lib]=0 [prog]=0) detach=([lib]=0 [prog]=0)
for _ in $(seq 1 "$rounds"); do
	for mode in lib prog; do
		if [[ $mode == prog ]]; then export RCON_NFT_PROGRAM=1; else unset RCON_NFT_PROGRAM; fi
		t0=$(date +%s%N)
		node "$rcon" network attach --netns "/var/run/netns/$ns-c" -p 8000:80 -p 8001:53/udp benchnft >/dev/null 2>&1
		t1=$(date +%s%N)
		node "$rcon" network detach --netns "/var/run/netns/$ns-c" benchnft 2>/dev/null
		t2=$(date +%s%N)
		attach[$mode]=$((attach[$mode] + t1 - t0))
		detach[$mode]=$((detach[$mode] + t2 - t1))
	done
done
unset RCON_NFT_PROGRAM
node "$rcon" network rm benchnft >/dev/null
for mode in lib prog; do
	printf 'rcon %-4s: attach (anti-spoofing, -p tcp, -p udp) %.2f ms, detach %.2f ms (means of %d)\n' "$mode" \
		"$(awk -v t="${attach[$mode]}" -v r="$rounds" 'BEGIN { print t / r / 1e6 }')" \
		"$(awk -v t="${detach[$mode]}" -v r="$rounds" 'BEGIN { print t / r / 1e6 }')" "$rounds"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
