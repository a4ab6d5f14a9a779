#!/usr/bin/env bash
# Boot Debian's stock kernel under qemu with an initramfs that runs one
# scenario, and report its verdict.
#
#   hack/qemu/run.sh SCENARIO.sh
#
# The scenario runs as root inside the VM (busybox sh; call iproute2 as
# /usr/sbin/ip). It passes by exiting 0; to fail with a reason, write one line
# to "$RCON_QEMU_REASON" and exit non-zero. This script prints the console and
# exits 0 only when the VM printed "RCON-QEMU-RESULT: PASS".
#
# Environment: RCON (the binary to ship, default target/release/rcon),
# RCON_QEMU_TIMEOUT (seconds, default 180), and mkinitramfs.sh's
# RCON_QEMU_MODULES / RCON_QEMU_EXTRA.
#
# The VM has no network device (-nic none): nothing it does reaches the host's
# network. Everything temporary lives in one mktemp dir, removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
kdir=$repo/hack/.cache/qemu/kernel
limit=${RCON_QEMU_TIMEOUT:-180}

die() {
	echo "qemu/run: $*" >&2
	exit 1
}

(($# == 1)) || die "usage: $0 SCENARIO.sh"
scenario=$1
[[ -f $scenario ]] || die "scenario $scenario not found"

# fetch.sh is instant once its cache is there; only a fresh machine pays.
if [[ ! -f $kdir/.kver ]]; then
	"$here/fetch.sh" >/dev/null
fi
kver=$(<"$kdir/.kver")
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (run hack/qemu/fetch.sh)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rcon-qemu-run.XXXXXX")
qpid=
# shellcheck disable=SC2317 # reached through the trap
cleanup() {
	if [[ -n $qpid ]]; then kill "$qpid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
# Turn INT/TERM into an ordinary exit so the EXIT trap stops qemu.
trap 'exit 130' INT
trap 'exit 143' TERM

"$here/mkinitramfs.sh" "$scenario" "$tmp/initrd.cpio.gz"

# -accel tcg: KVM hangs on these VMs (qemu's default CPU: -cpu max is slower
# under TCG). -nic none: no path out of the VM.
start=$(date +%s.%N)
timeout -k 5 "$limit" qemu-system-x86_64 \
	-accel tcg -m 1024 -smp 1 \
	-nographic -no-reboot -no-user-config -nic none \
	-kernel "$kdir/boot/vmlinuz-$kver" \
	-initrd "$tmp/initrd.cpio.gz" \
	-append 'console=ttyS0 panic=-1 quiet' \
	</dev/null >"$tmp/console" 2>&1 &
qpid=$!
rc=0
wait "$qpid" || rc=$?
qpid=
end=$(date +%s.%N)

# The serial console writes CRLF line ends, and SeaBIOS clears the screen.
tr -d '\r' <"$tmp/console" | sed 's/\x1bc/\n/g; s/\x1b\[[0-9;?]*[a-zA-Z]//g' >"$tmp/console.txt"
lines=$(wc -l <"$tmp/console.txt")
if ((lines > 200)); then
	echo "qemu/run: console (last 200 of $lines lines):"
	tail -n 200 "$tmp/console.txt"
else
	echo "qemu/run: console:"
	cat "$tmp/console.txt"
fi
awk -v k="$kver" -v s="$start" -v e="$end" 'BEGIN { printf "qemu/run: kernel %s, boot+scenario %.1f s\n", k, e - s }'

if ((rc == 124 || rc == 137)); then
	echo "qemu/run: FAIL: no verdict within ${limit}s (qemu killed)" >&2
	exit 1
fi
if grep -qx 'RCON-QEMU-RESULT: PASS' "$tmp/console.txt"; then
	exit 0
fi
if ! grep -q '^RCON-QEMU-RESULT: ' "$tmp/console.txt"; then
	echo "qemu/run: FAIL: the VM ended (qemu status $rc) without a verdict" >&2
fi
exit 1
