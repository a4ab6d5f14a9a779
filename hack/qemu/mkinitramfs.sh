#!/usr/bin/env bash
# Build the initramfs that hack/qemu/run.sh boots with Debian's stock kernel.
#
#   hack/qemu/mkinitramfs.sh SCENARIO.sh OUT.cpio.gz
#
# Archives are written with busybox's cpio (GNU cpio is not needed).
# OUT is two concatenated gzip'd cpio archives (the kernel unpacks them in
# turn): a base layer cached in hack/.cache/qemu/ (busybox, rcon and its
# libraries, ip, nft, conntrack, tcpdump and ethtool if installed, the kernel
# modules and /init) and a small layer holding only /scenario.sh,
# /scenario-lib.sh (scenarios/lib.sh, the helpers scenarios source) and the
# test worlds' sysctl baseline (/netns-baseline.conf and /netns-baseline.sh,
# from hack/lib/, which lib.sh sources). The
# scenario layer is rebuilt on every call, so it needs no cache key: editing a
# scenario or lib.sh never rebuilds the base; a new rcon binary, kernel or
# script does.
#
# Environment:
#   RCON               the rcon binary (default target/release/rcon)
#   RCON_QEMU_MODULES  extra modules to load at boot, space separated
#   RCON_QEMU_EXTRA    a directory copied over / in the base layer (e.g. a
#                      busybox rootfs for containers); part of the cache key
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=$repo/hack/.cache/qemu
kdir=$cache/kernel

die() {
	echo "qemu/mkinitramfs: $*" >&2
	exit 1
}

(($# == 2)) || die "usage: $0 SCENARIO.sh OUT.cpio.gz"
scenario=$1
out=$2
[[ -f $scenario ]] || die "scenario $scenario not found"
[[ -f $kdir/.kver ]] || die "no kernel in $kdir: run hack/qemu/fetch.sh"
kver=$(<"$kdir/.kver")
export PATH=$PATH:/usr/sbin:/sbin

rcon=${RCON:-$repo/target/release/rcon}
[[ -x $rcon ]] || die "rcon binary $rcon not found (cargo build --release, or set RCON)"
busybox=/bin/busybox
[[ -x $busybox ]] || die "$busybox not found (install busybox-static)"

# What rcon and the scenarios may call. ip and nft are required; conntrack
# (rcon flushes UDP entries with it), tcpdump (debugging) and ethtool
# (cluster-ipip.sh switches a veth's offloads) when installed.
bins=()
for b in ip nft; do
	p=$(command -v "$b") || die "$b not found on the host (install iproute2 / nftables)"
	bins+=("$p")
done
for b in conntrack tcpdump ethtool; do
	if p=$(command -v "$b"); then bins+=("$p"); fi
done

# Modules loaded at boot; Debian builds all of these as modules. The nft ones
# cover the expressions rcon's ruleset uses (src/net/firewall/nftables.rs:
# vmap/sets are in nf_tables itself; ct, masquerade, nat, numgen, fib).
# br_netfilter mirrors the dev machines, whose kernel has it built in with
# bridge-nf-call-iptables=1. nft_meta_bridge carries `meta` (iifname) in the
# bridge family, which the anti-spoofing table uses (firewall/guard.rs).
# sch_ingress (clsact) and cls_bpf carry the eBPF IPIP plane's tc programs.
modules=(
	veth bridge br_netfilter macvlan tun
	ipip vxlan
	nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_numgen nft_fib_ipv4
	nft_meta_bridge nf_conntrack_netlink
	sch_ingress cls_bpf
)
read -ra extra_mods <<<"${RCON_QEMU_MODULES:-}"
modules+=("${extra_mods[@]}")

# The cache key: everything that goes into the base layer.
key=$(
	{
		echo "$kver ${modules[*]}"
		sha256sum "$here/mkinitramfs.sh" "$here/init" "$rcon" "$busybox" "${bins[@]}"
		if [[ -n ${RCON_QEMU_EXTRA:-} ]]; then
			(cd "$RCON_QEMU_EXTRA" && find . -printf '%p %s %T@ %m %l\n' | LC_ALL=C sort)
		fi
	} | sha256sum | cut -c1-16
)
base=$cache/base-$key.cpio.gz

if [[ ! -f $base ]]; then
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/rcon-qemu-initramfs.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	root=$tmp/root
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,var/lib,lib/modules}
	# /var/run is /run, as on the host: ip netns and rcon use /var/run/netns.
	ln -s ../run "$root/var/run"

	# busybox applets go in /bin only, behind /usr/sbin in PATH, so a real ip
	# or nft wins for exec (busybox's own sh still prefers its applets: call
	# /usr/sbin/ip by full path in scenarios).
	cp "$busybox" "$root/bin/busybox"
	for a in $("$busybox" --list); do
		[[ -e $root/bin/$a ]] || ln -s busybox "$root/bin/$a"
	done

	# copy_elf FILE DEST: FILE at DEST in the image, plus each library ldd
	# lists at its own path (the loader included).
	copy_elf() {
		install -D -m 0755 "$1" "$root$2"
		local lib
		for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
			[[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
		done
	}
	copy_elf "$rcon" /usr/bin/rcon
	for b in "${bins[@]}"; do
		copy_elf "$b" "/usr/sbin/${b##*/}"
	done
	# Debian's loader path is /lib64/ld-linux-x86-64.so.2, and glibc finds
	# libraries in /lib/x86_64-linux-gnu without an ld.so.cache.
	[[ -e $root/lib64/ld-linux-x86-64.so.2 ]] || die "ldd listed no /lib64/ld-linux-x86-64.so.2 for $rcon"
	if [[ -d /etc/iproute2 ]]; then cp -a /etc/iproute2 "$root/etc/"; fi

	# Modules in dependency order, each once; /init insmods them in this order.
	: >"$root/etc/modules.order"
	for m in "${modules[@]}"; do
		deps=$(modprobe -d "$kdir" -S "$kver" --show-depends "$m") || die "module $m not found in kernel $kver"
		while read -r verb path _; do
			[[ $verb == insmod ]] || continue
			rel=${path#"$kdir"}
			# libcrc32c's soft dependency on "crc32c" lists crc32c-intel, which
			# needs SSE4.2 (absent from qemu's default CPU, and -cpu max is
			# slower under TCG); crc32c_generic, also listed, does the job.
			[[ $rel == */arch/x86/crypto/* ]] && continue
			if ! grep -qxF "$rel" "$root/etc/modules.order"; then
				install -D -m 0644 "$path" "$root$rel"
				echo "$rel" >>"$root/etc/modules.order"
			fi
		done <<<"$deps"
	done

	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
	echo rcon-qemu >"$root/etc/hostname"
	install -m 0755 "$here/init" "$root/init"

	if [[ -n ${RCON_QEMU_EXTRA:-} ]]; then
		cp -a "$RCON_QEMU_EXTRA/." "$root/"
	fi

	# Keep only the newest base: each rcon build makes a new key.
	rm -f "$cache"/base-*.cpio.gz
	(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0) |
		gzip -1 >"$tmp/base.cpio.gz"
	# mv is atomic on one filesystem: a parallel run sees all of it or none.
	mv "$tmp/base.cpio.gz" "$base.$$"
	mv "$base.$$" "$base"
	rm -rf "$tmp"
	trap - EXIT
fi

# The scenario layer, appended to the base (built afresh every time: no key).
stmp=$(mktemp -d "${TMPDIR:-/tmp}/rcon-qemu-scenario.XXXXXX")
trap 'rm -rf "$stmp"' EXIT
install -m 0755 "$scenario" "$stmp/scenario.sh"
install -m 0644 "$here/scenarios/lib.sh" "$stmp/scenario-lib.sh"
install -m 0644 "$repo/hack/lib/netns-baseline.conf" "$stmp/netns-baseline.conf"
install -m 0644 "$repo/hack/lib/netns-baseline.sh" "$stmp/netns-baseline.sh"
{
	cat "$base"
	(cd "$stmp" && printf '%s\n' scenario.sh scenario-lib.sh netns-baseline.conf netns-baseline.sh |
		"$busybox" cpio -o -H newc -R 0:0 | gzip -1)
} >"$out"
