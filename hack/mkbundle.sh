#!/usr/bin/env bash
# Build the busybox rootfs that tests, demo and benchmarks run, and OCI
# bundles made from it.
#
#   hack/mkbundle.sh [OUTDIR]
#       (Re)build the rootfs at OUTDIR (default hack/.cache/busybox/rootfs,
#       or $RCON_TEST_ROOTFS). A no-op when it is already there and not older
#       than /bin/busybox.
#   hack/mkbundle.sh --bundle DIR [ARGS...]
#       Write an OCI bundle: DIR/rootfs (a copy of the rootfs above) and
#       DIR/config.json from `rcon spec`, with terminal off and process.args
#       set to ARGS (default: sh). The rcon binary is $RCON, else
#       target/release/rcon.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
busybox=/bin/busybox # Debian's busybox-static: no libraries to copy along
default_rootfs=${RCON_TEST_ROOTFS:-$repo/hack/.cache/busybox/rootfs}

die() {
	echo "mkbundle: $*" >&2
	exit 1
}

# build_rootfs OUT: make OUT a busybox rootfs unless an up-to-date one is there.
build_rootfs() {
	local out=$1
	[[ -x $busybox ]] || die "$busybox not found (install busybox-static: hack/install-deps.sh)"
	# A static binary is what makes a one-file rootfs work; refuse a dynamic one.
	if command -v file >/dev/null 2>&1 && file -L "$busybox" | grep -q 'dynamically linked'; then
		die "$busybox is dynamically linked; install busybox-static"
	fi
	# The rootfs is only ever published by the rename below, so a complete
	# bin/busybox that is not older than the host's means it is up to date.
	if [[ -x $out/bin/busybox && ! $busybox -nt $out/bin/busybox ]]; then
		return 0
	fi

	mkdir -p "$(dirname "$out")"
	local tmp
	tmp=$(mktemp -d "$out.tmp.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now: it is local
	trap "rm -rf '$tmp'" EXIT

	chmod 0755 "$tmp" # mktemp made it 0700
	mkdir -p "$tmp"/{bin,proc,sys,dev,tmp,etc,root}
	chmod 1777 "$tmp/tmp"
	chmod 0700 "$tmp/root"
	cp "$busybox" "$tmp/bin/busybox"
	# Every applet as a relative link in /bin, which is on the default PATH.
	local applet
	while read -r applet; do
		[[ -n $applet && $applet != busybox ]] || continue
		ln -sf busybox "$tmp/bin/$applet"
	done < <("$busybox" --list)
	# Some programs look in /sbin and /usr/bin; point them at the same place.
	ln -s bin "$tmp/sbin"
	mkdir -p "$tmp/usr"
	ln -s ../bin "$tmp/usr/bin"
	ln -s ../bin "$tmp/usr/sbin"

	cat >"$tmp/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/sh
		nobody:x:65534:65534:nobody:/nonexistent:/bin/false
	EOF
	cat >"$tmp/etc/group" <<-'EOF'
		root:x:0:
		nogroup:x:65534:
	EOF
	echo rcon >"$tmp/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$tmp/etc/hosts"
	# No nameserver on purpose: nothing in a test may resolve outside names.
	echo "# rcon busybox rootfs: no DNS" >"$tmp/etc/resolv.conf"

	# Publish: replace any stale rootfs in one rename.
	rm -rf --one-file-system "$out"
	mv "$tmp" "$out"
	trap - EXIT
	echo "mkbundle: built rootfs at $out ($("$busybox" --list | wc -l) applets)"
}

# make_bundle DIR ARGS...: rootfs copy + edited `rcon spec` config.
make_bundle() {
	local dir=$1
	shift
	(($# > 0)) || set -- sh
	local rcon=${RCON:-$repo/target/release/rcon}
	[[ -x $rcon ]] || die "rcon binary not found at $rcon (run 'make build' or set RCON)"
	command -v jq >/dev/null || die "jq not found (hack/install-deps.sh)"

	build_rootfs "$default_rootfs"
	mkdir -p "$dir"
	# A bundle's rootfs is private to it: containers may write to it.
	rm -rf --one-file-system "$dir/rootfs"
	cp -a "$default_rootfs" "$dir/rootfs"
	rm -f "$dir/config.json"
	"$rcon" spec --bundle "$dir"
	# Build the args array one --arg at a time: every argument arrives intact,
	# even one that starts with a dash or holds a newline.
	local args='[]' a
	for a in "$@"; do
		args=$(jq -c --arg a "$a" '. + [$a]' <<<"$args")
	done
	local cfg=$dir/config.json
	jq --argjson args "$args" '.process.terminal = false | .process.args = $args' "$cfg" >"$cfg.new" ||
		{
			rm -f "$cfg.new"
			die "editing $cfg failed"
		}
	mv "$cfg.new" "$cfg"
}

case "${1:-}" in
--bundle)
	[[ $# -ge 2 ]] || die "usage: $0 --bundle DIR [ARGS...]"
	dir=$2
	shift 2
	make_bundle "$dir" "$@"
	;;
-h | --help)
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	;;
-*) die "unknown option $1 (see --help)" ;;
*) build_rootfs "${1:-$default_rootfs}" ;;
esac
