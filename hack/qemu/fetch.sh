#!/usr/bin/env bash
# Fetch what hack/qemu/ needs to boot Debian's stock kernel under qemu:
#   - the kernel and its modules, unpacked into hack/.cache/qemu/kernel/
#     (apt-get download + dpkg-deb -x: nothing is installed, /boot and grub
#     are untouched), with modules.dep built by `depmod -b` so modprobe can
#     print load orders against it;
#   - qemu-system-x86, busybox-static and kmod (modprobe/depmod), through apt,
#     only when missing.
# Idempotent: a second run with everything in place makes no apt call.
#
#   hack/qemu/fetch.sh        prints the kernel version (KVER) on stdout
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=$repo/hack/.cache/qemu
kdir=$cache/kernel

die() {
	echo "qemu/fetch: $*" >&2
	exit 1
}
log() { echo "qemu/fetch: $*" >&2; }

# Host tools. kmod gives modprobe/depmod; nothing here loads a module.
pkgs=()
command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
[[ -x /bin/busybox ]] || pkgs+=(busybox-static)
{ command -v depmod && command -v modprobe; } >/dev/null 2>&1 || [[ -x /sbin/depmod && -x /sbin/modprobe ]] || pkgs+=(kmod)
if ((${#pkgs[@]})); then
	[[ $(id -u) -eq 0 ]] || die "need root to install ${pkgs[*]}"
	log "installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2 || die "apt-get update failed"
	apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 || die "apt-get install ${pkgs[*]} failed"
fi
export PATH=$PATH:/usr/sbin:/sbin

# The stamp records the kernel version once the tree is complete, so an
# interrupted run is redone rather than trusted.
if [[ -f $kdir/.kver ]]; then
	kver=$(<"$kdir/.kver")
	if [[ -f $kdir/boot/vmlinuz-$kver && -f $kdir/lib/modules/$kver/modules.dep ]]; then
		echo "$kver"
		exit 0
	fi
fi

# The image package linux-image-amd64 points at today, e.g. linux-image-6.1.0-56-amd64.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $pkg ]]; then
	apt-get update >&2 || die "apt-get update failed"
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n $pkg ]] || die "cannot tell which kernel linux-image-amd64 depends on (apt-cache depends linux-image-amd64)"
# Debian also ships a -unsigned variant under another name; the signed one
# depends on nothing we need, so its own files are enough.
kver=${pkg#linux-image-}
log "downloading $pkg"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rcon-qemu-fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt downloads as _apt when that user can write the directory (else it warns).
chown _apt "$tmp" 2>/dev/null || true
(cd "$tmp" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed"
deb=$(echo "$tmp"/*.deb)
[[ -f $deb ]] || die "apt-get download $pkg left no .deb"

rm -rf "$kdir"
mkdir -p "$kdir"
dpkg-deb -x "$deb" "$kdir"
# Debian's usrmerged packages may put modules under usr/lib; normalise.
if [[ ! -d $kdir/lib/modules/$kver && -d $kdir/usr/lib/modules/$kver ]]; then
	mkdir -p "$kdir/lib/modules"
	mv "$kdir/usr/lib/modules/$kver" "$kdir/lib/modules/"
fi
[[ -f $kdir/boot/vmlinuz-$kver ]] || die "$pkg has no boot/vmlinuz-$kver"
[[ -d $kdir/lib/modules/$kver ]] || die "$pkg has no lib/modules/$kver"
# The package leaves modules.dep to its postinst (depmod); build it here.
depmod -b "$kdir" "$kver"
echo "$kver" >"$kdir/.kver"
log "kernel $kver ready in $kdir"
echo "$kver"
