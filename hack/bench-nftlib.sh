#!/usr/bin/env bash
# The cost of one nftables change, the way rcon makes it now (libnftables
# in-process, a fresh context per call) against the way it did (an `nft -f -`
# child): N one-element adds to a set each way, in a network namespace of its
# own (`ip netns add rcon-bnftlib-PID`, removed at the end and on failure).
# Prints the mean per add; docs/PERFORMANCE.md quotes it with the load.
#
#   hack/bench-nftlib.sh          (N=500 in-process, 200 spawned)
#   BENCH_NFTLIB_N=1000 hack/bench-nftlib.sh
#
# Needs gcc and libnftables1 (the C caller declares the five functions it
# uses, so no -dev package).
set -euo pipefail

n=${BENCH_NFTLIB_N:-500}
spawned=$(( n * 2 / 5 ))
ns=rcon-bnftlib-$$
dir=$(mktemp -d /tmp/rcon-bnftlib-XXXXXX)
lib=$(ldconfig -p | awk '/libnftables\.so\.1 /{print $NF; exit}')
[[ -n $lib ]] || { echo "bench-nftlib: libnftables.so.1 not found (install libnftables1)" >&2; exit 1; }
cleanup() { ip netns delete "$ns" 2>/dev/null || true; rm -rf "$dir"; }
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
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
