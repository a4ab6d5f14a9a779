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
#   - limits: pids, memory and cpu in the container's v2 group (runc's
#     conversions), controllers enabled on the way down from the root; a
#     fork loop stops at the pids limit; a memory hog is OOM-killed (137);
#   - a pod (`pod create --memory 48m --pids-limit 24`): its limits in
#     rcon/pod-<id>, the pause process in its `pause` child, an OCI member
#     (rcon.pod annotation) nested in it, and the hog, with no limit of its
#     own, OOM-killed by the pod's; `pod rm` removes the pod's group.
set -u
SCENARIO=cgroup-v2
# shellcheck source-path=SCRIPTDIR source=lib.sh
. /scenario-lib.sh

CG=/sys/fs/cgroup

on_fail() {
	find "$CG/rcon" -mindepth 1 -maxdepth 1 2>/dev/null | sed 's/^/  cgroup rcon: /'
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
[ "$(echo "$got" | tr '\n' ' ')" = "1 null-ok " ] || fail "/dev/zero or /dev/null refused under deny-all plus defaults: $got"
step "/dev/zero read, /dev/null written"
got=$(rcon exec dev sh -c "$OPEN_TUN" 2>&1)
echo "$got" | grep -qx made || fail "mknod refused (c *:* m is allowed): $got"
echo "$got" | grep -q '/dev/tun: Operation not permitted' || fail "the TUN node was not refused: $got"
step "c 10:200: mknod yes, open: Operation not permitted"
out=$(rcon delete --force dev 2>&1) || fail "delete dev: $out"
[ ! -d "$CG/rcon/dev" ] || fail "cgroup $CG/rcon/dev left after delete"

step "limits on v2: pids, memory and cpu written with runc's conversions"
bundle /tmp/lim '[]' ', "pids": {"limit": 16}, "memory": {"limit": 33554432}, "cpu": {"quota": 50000, "period": 100000, "shares": 1024}'
detach lim /tmp/lim || fail "run lim: $(cat /tmp/run-lim.out)"
for want in pids.max=16 memory.max=33554432 "cpu.max=50000 100000" cpu.weight=39; do
	got=$(cat "$CG/rcon/lim/${want%%=*}" 2>&1)
	[ "$got" = "${want#*=}" ] || fail "${want%%=*} is $got, want ${want#*=}"
done
grep -qw pids "$CG/cgroup.subtree_control" || fail "pids not enabled in the root's subtree_control"
step "pids.max 16, memory.max 32 MiB, cpu.max 50000 100000, cpu.weight 39 (shares 1024)"
# shellcheck disable=SC2016 # expanded by the container's shell
got=$(rcon exec lim sh -c 'n=0; while [ $n -lt 40 ]; do sleep 100 >/dev/null 2>&1 & n=$((n+1)); done; echo looped' 2>&1)
echo "$got" | grep -qi fork || fail "40 forks under a pids limit of 16 all succeeded: $got"
cur=$(cat "$CG/rcon/lim/pids.current")
[ "$cur" -le 16 ] || fail "pids.current $cur above the limit"
step "a fork loop stops at the pids limit ($cur pids)"
out=$(rcon delete --force lim 2>&1) || fail "delete lim: $out"

step "a memory hog under 32 MiB on v2"
bundle /tmp/hog '[]' ', "memory": {"limit": 33554432}'
# 64 MiB in a shell variable: the shell, the container's init, is the one killed.
cat >/tmp/hog/rootfs/hog.sh <<'HOG'
x=$(head -c 67108864 /dev/zero | tr "\0" a); echo ${#x}
HOG
sed -i 's|"args": \["sleep", "1000"\]|"args": ["sh", "/hog.sh"]|' /tmp/hog/config.json
grep -q hog.sh /tmp/hog/config.json || fail "the hog's config was not written"
rcon run --bundle /tmp/hog hog >/tmp/run-hog.out 2>&1 </dev/null
code=$?
[ "$code" = 137 ] || fail "the hog exited $code, want 137: $(cat /tmp/run-hog.out)"
step "the hog was OOM-killed: exit 137"

step "a pod's cgroup on v2: its limits bind a member with none of its own"
pod=$(rcon pod create --name p --network none --memory 48m --pids-limit 24 2>&1) || fail "pod create: $pod"
PCG=$CG/rcon/pod-$pod
for want in memory.max=50331648 pids.max=24; do
	got=$(cat "$PCG/${want%%=*}" 2>&1)
	[ "$got" = "${want#*=}" ] || fail "pod ${want%%=*} is $got, want ${want#*=}"
done
# cgroup files show size 0: read it.
[ -n "$(cat "$PCG/pause/cgroup.procs")" ] || fail "no pause process in $PCG/pause"
# The hog again, with no limit of its own: only the pod's 48 MiB holds it.
cp -a /tmp/hog /tmp/member
sed -i 's|"memory": {"limit": 33554432}|"pids": {"limit": 100}|; s|"ociVersion": "1.2.0",|"ociVersion": "1.2.0", "annotations": {"rcon.pod": "p"},|' /tmp/member/config.json
grep -q rcon.pod /tmp/member/config.json || fail "the member's config was not written"
rcon create --bundle /tmp/member member >/tmp/run-member.out 2>&1 </dev/null || fail "create member: $(cat /tmp/run-member.out)"
[ -d "$PCG/member" ] || fail "the member's cgroup is not $PCG/member: $(find "$CG/rcon" -maxdepth 2 -type d)"
rcon delete --force member >/dev/null 2>&1
rcon run --bundle /tmp/member member >/tmp/run-member.out 2>&1 </dev/null
code=$?
[ "$code" = 137 ] || fail "the pod's hog exited $code, want 137: $(cat /tmp/run-member.out)"
step "pod: memory.max 48 MiB, pids.max 24, pause in pod/pause, the member nested and OOM-killed: exit 137"
out=$(rcon pod rm -f p 2>&1) || fail "pod rm: $out"
[ ! -d "$PCG" ] || fail "$PCG left after pod rm"

left=$(find "$CG/rcon" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
[ -z "$left" ] || fail "container cgroups left: $left"
step "ok"
