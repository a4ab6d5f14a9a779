# shellcheck shell=sh
# netns_baseline NS: write the sysctl baseline of a test world's namespace
# (hack/lib/netns-baseline.conf: why, and the values) into the named netns
# /var/run/netns/NS. Call it right after `ip netns add NS`, before any link
# is made there and before rcon runs there; set what the world needs
# otherwise (a router's ip_forward=1) after it. POSIX sh: the qemu VM's
# busybox sh sources it too (hack/qemu/scenarios/lib.sh).
#
# NETNS_BASELINE_CONF is the file (default: netns-baseline.conf next to this
# one when sourced by bash; the VM sets /netns-baseline.conf). Keys this
# kernel lacks are skipped; a write that fails returns 1 with a message.
netns_baseline() {
	# shellcheck disable=SC2016 # the script is for the inner sh, unexpanded here
	nsenter --net=/var/run/netns/"$1" sh -c '
		while IFS= read -r line || [ -n "$line" ]; do
			line=${line%%#*}
			case $line in *=*) ;; *) continue ;; esac
			key=$(echo ${line%%=*})
			val=$(echo ${line#*=})
			f=/proc/sys/$(echo "$key" | tr . /)
			[ -e "$f" ] || continue
			echo "$val" >"$f" || { echo "netns_baseline $0: writing $val to $key failed" >&2; exit 1; }
		done' "$1" <"${NETNS_BASELINE_CONF:?netns_baseline: NETNS_BASELINE_CONF not set}"
}
