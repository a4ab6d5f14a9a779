#!/bin/sh
# Runs inside the qemu VM (hack/qemu/run.sh): rcon on a pure cgroup v2 host
# (the VM mounts only cgroup2, at /sys/fs/cgroup), where device rules are a
# BPF cgroup device program (src/runtime/device_prog.rs) instead of the v1
# devices controller. Checks:
#   - the host is pure v2: no v1 devices controller mounted;
#   - control: a container without device rules opens a TUN node it made
#     (c 10:200; the open needs no capability), so a refusal is the program's;
#   - a container whose config denies all devices still reads /dev/zero and
#     writes /dev/null (rcon's defaults come after the config's rules), may
#     mknod, and cannot open the TUN node ("Operation not permitted");
#   - deleting the container removes its cgroup dir (and the program with it);
#   - a pids limit: applied (pids.max in the container's v2 group) once rcon
#     writes v2 resources, else refused with one line naming the field.
set -u
SCENARIO=cgroup-v2
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh

CG=/sys/fs/cgroup

on_fail() {
	ls "$CG/rcon" 2>/dev/null | sed 's/^/  cgroup rcon: /'
	rcon list 2>/dev/null | sed 's/^/  rcon list: /'
}

# bundle DIR DEVICES [RESOURCES_EXTRA]: a busybox bundle running sleep, with
# CAP_MKNOD, and DEVICES as linux.resources.devices.
bundle() {
	mkdir -p "$1/rootfs/bin" "$1/rootfs/dev" "$1/rootfs/proc" "$1/rootfs/sys" "$1/rootfs/tmp"
	cp /bin/busybox "$1/rootfs/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ -e "$1/rootfs/bin/$a" ] || ln -s busybox "$1/rootfs/bin/$a"
	done
	caps='"CAP_MKNOD", "CAP_KILL"'
	cat >"$1/config.json" <<EOF
{
  "ociVersion": "1.2.0",
  "root": {"path": "rootfs"},
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sleep", "1000"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {"bounding": [$caps], "effective": [$caps], "permitted": [$caps]}
  },
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
  ],
  "linux": {
    "resources": {"devices": $2${3:-}},
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]
  }
}
EOF
}

# detach ID BUNDLE: rcon run --detach; its output goes to a file, since the
# container keeps rcon's stdio (a $(...) would wait for the container).
detach() {
	rcon run --detach --bundle "$2" "$1" >/tmp/run-"$1".out 2>&1 </dev/null
}

OPEN_TUN='mknod /dev/tun c 10 200 && echo made; : <>/dev/tun && echo opened'

step "host: $(grep -c cgroup2 /proc/mounts) cgroup2 mount(s), controllers: $(cat $CG/cgroup.controllers)"
! grep -q ' cgroup .*devices' /proc/mounts || fail "a v1 devices controller is mounted: not a pure v2 host"

step "control: no device rules, the TUN node opens"
bundle /tmp/open '[]'
detach ctl /tmp/open || fail "run ctl: $(cat /tmp/run-ctl.out)"
got=$(rcon exec ctl sh -c "$OPEN_TUN" 2>&1)
[ "$got" = "$(printf 'made\nopened')" ] || fail "control could not open its TUN node: $got"
out=$(rcon delete --force ctl 2>&1) || fail "delete ctl: $out"

step "deny all: the defaults work, the TUN node does not"
bundle /tmp/deny '[{"allow": false, "access": "rwm"}]'
detach dev /tmp/deny || fail "run dev: $(cat /tmp/run-dev.out)"
[ -d "$CG/rcon/dev" ] || fail "no cgroup $CG/rcon/dev"
got=$(rcon exec dev sh -c 'head -c1 /dev/zero | wc -c; echo x >/dev/null && echo null-ok' 2>&1)
[ "$(echo $got)" = "1 null-ok" ] || fail "/dev/zero or /dev/null refused under deny-all plus defaults: $got"
step "/dev/zero read, /dev/null written"
got=$(rcon exec dev sh -c "$OPEN_TUN" 2>&1)
echo "$got" | grep -qx made || fail "mknod refused (c *:* m is allowed): $got"
echo "$got" | grep -q '/dev/tun: Operation not permitted' || fail "the TUN node was not refused: $got"
step "c 10:200: mknod yes, open: Operation not permitted"
out=$(rcon delete --force dev 2>&1) || fail "delete dev: $out"
[ ! -d "$CG/rcon/dev" ] || fail "cgroup $CG/rcon/dev left after delete"

step "pids limit on v2"
bundle /tmp/pids '[]' ', "pids": {"limit": 16}'
if detach pids /tmp/pids; then
	got=$(cat "$CG/rcon/pids/pids.max" 2>&1)
	[ "$got" = 16 ] || fail "pids limit accepted but pids.max is $got"
	step "pids: pids.max 16 in the container's v2 group"
	out=$(rcon delete --force pids 2>&1) || fail "delete pids: $out"
else
	out=$(cat /tmp/run-pids.out)
	[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "pids refusal is not one line: $out"
	echo "$out" | grep -q 'linux.resources.pids' || fail "pids refusal does not name the field: $out"
	step "pids: not applied on v2 yet, refused in one line: $out"
fi
left=$(find "$CG/rcon" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
[ -z "$left" ] || fail "container cgroups left: $left"
step "ok"
