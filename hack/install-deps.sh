#!/usr/bin/env bash
# Install the Debian packages rcon's tests, demo and benchmarks need, but only
# the ones that are missing: a machine that has them all makes no apt call.
#
#   hack/install-deps.sh          test/demo set
#   hack/install-deps.sh --bench  test/demo set plus the bench set
#   hack/install-deps.sh --all    same as --bench
set -euo pipefail

# The package lists, kept here and nowhere else.
TEST_PKGS=(
	busybox-static # the container rootfs (hack/mkbundle.sh copies /bin/busybox)
	iproute2       # ip: links, addresses, routes inside test namespaces
	util-linux     # nsenter, unshare, mount
	jq             # config.json edits in hack/ scripts
	socat          # listeners that play "the internet" in runtime-tests
	procps         # ps, pgrep for checks in scripts
	skopeo          # pushes the busybox image to the test registry (runtime-tests/images.rs)
	docker-registry # a registry the pull test starts inside its own netns
	tmux            # drives `rcon run -it` the way a person types (runtime-tests/dockerrun.rs)
	libnftables1    # rcon drives the default firewall backend and the anti-spoofing table through it, in-process (dlopen)
	nftables        # nft: rule checks in tests, and rcon's fallback where libnftables is missing
	iptables        # the second firewall backend
	conntrack       # conntrack checks in tests (rcon flushes stale UDP entries over netlink itself)
	strace          # runtime-tests/hotpath.rs: no child process on the hot path
	python3         # a UDP echo server in runtime-tests/ports.rs, spoofed frames in antispoof.rs, bench-ports' connect client
	runc            # another runtime wired by `rcon network hook` (examples/network-bundle)
	qemu-system-x86 # boots Debian's stock kernel for the kernel ipip tests (hack/qemu/)
	kmod            # modprobe/depmod: module load order for the qemu initramfs
	tcpdump         # wire checks of the cluster backends (VXLAN port, IP protocol 4)
	ethtool         # the qemu ipip scenario turns a veth's tx offloads off (hack/qemu/)
	libseccomp-dev  # linux.seccomp: the libseccomp crate links libseccomp (build time)
	pkg-config      # how libseccomp-sys finds it
	containerd      # `ctr oci spec` bundles in runtime-tests/foreign.rs
	podman          # podman --runtime rcon in runtime-tests/foreign.rs
	containernetworking-plugins # podman's CNI network there (also a bench peer)
	protobuf-compiler # protoc: the etcd-client crate compiles etcd's gRPC API (build time)
	libprotobuf-dev   # the well-known types protoc imports there (google/protobuf/descriptor.proto), a Recommends we do not get
	etcd-server       # the etcd that runtime-tests/etcd.rs starts inside its own namespace
	etcd-client       # etcdctl: leases written by hand, as flannel's tools do
	openssl           # a CA and certificates for the etcd TLS test
	bpftool           # lists the cgroup device program in runtime-tests/devices_bpf.rs, and the eBPF IPIP plane's
	musl-tools        # musl-gcc: a musl program under the default seccomp profile (runtime-tests/seccomp.rs)
	clang             # compiles the eBPF IPIP programs (build.rs: clang -target bpf; build time)
	libbpf-dev        # their bpf_helpers.h (build time)
	linux-libc-dev    # their linux/bpf.h and friends (build time)
	dnsmasq-base      # the upstream DNS server runtime-tests/dns.rs starts in its "outside" namespace
)
BENCH_PKGS=(
	crun      # a second peer
	hyperfine # the timer
	netavark # network setup peer (Podman's)
	iperf3                      # cluster backends' throughput (hack/bench-cluster.sh; also copied into the qemu image)
	dnsperf      # the load generator of hack/bench-dns.sh
	aardvark-dns # the DNS peer there (Podman's resolver)
)

want=("${TEST_PKGS[@]}")
case "${1:-}" in
"") ;;
--bench | --all) want+=("${BENCH_PKGS[@]}") ;;
*)
	echo "usage: $0 [--bench|--all]" >&2
	exit 2
	;;
esac

# cargo is not a Debian package here (rustup); say so plainly rather than let
# a later `cargo build` fail with "command not found".
if ! command -v cargo >/dev/null 2>&1; then
	echo "install-deps: cargo not found on PATH; install a Rust toolchain (rustup) or add ~/.cargo/bin to PATH" >&2
	exit 1
fi

missing=()
for p in "${want[@]}"; do
	# dpkg-query exits non-zero for unknown packages; treat that as missing.
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#want[@]} packages present"
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: need root to install ${missing[*]}" >&2
	exit 1
fi
# set -e makes any apt failure fatal; the messages below say which step failed.
export DEBIAN_FRONTEND=noninteractive
apt-get update || {
	echo "install-deps: apt-get update failed" >&2
	exit 1
}
apt-get install -y --no-install-recommends "${missing[@]}" || {
	echo "install-deps: apt-get install ${missing[*]} failed" >&2
	exit 1
}
echo "install-deps: done"
