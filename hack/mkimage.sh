#!/usr/bin/env bash
# Build a busybox image from Debian's busybox-static, by hand (tar, gzip,
# sha256sum, jq), in the two formats `rcon image import` reads:
#
#   hack/.cache/busybox-oci/         an OCI image layout (gzip layer)
#   hack/.cache/busybox-docker.tar   a `docker save` archive (plain layer)
#
# Both are named busybox:latest. A no-op when both exist and are newer than
# /bin/busybox and this script. Nothing is downloaded.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=$repo/hack/.cache
oci=$cache/busybox-oci
dtar=$cache/busybox-docker.tar
busybox=/bin/busybox

die() {
	echo "mkimage: $*" >&2
	exit 1
}

[[ -x $busybox ]] || die "$busybox not found (install busybox-static: hack/install-deps.sh)"
command -v jq >/dev/null || die "jq not found (hack/install-deps.sh)"
self=${BASH_SOURCE[0]}
if [[ -f $oci/index.json && -f $dtar && ! $busybox -nt $oci/index.json && ! $self -nt $oci/index.json && ! $busybox -nt $dtar ]]; then
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/mkimage.XXXXXX")
# shellcheck disable=SC2064 # expand $work now
trap "rm -rf '$work'" EXIT

# The rootfs: bin/busybox, a relative link per applet, passwd and group.
root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev}
chmod 0755 "$root"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp "$busybox" "$root/bin/busybox"
while read -r applet; do
	[[ -n $applet && $applet != busybox ]] || continue
	ln -s busybox "$root/bin/$applet"
done < <("$busybox" --list)
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

# One reproducible layer: sorted, owned by root, fixed mtime.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .
gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
diff_id=$(sha "$work/layer.tar")

jq -n --arg d "sha256:$diff_id" '{
	architecture: "amd64", os: "linux",
	created: "1970-01-01T00:00:00Z",
	config: {Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"], ExposedPorts: {"7000/tcp": {}}},
	rootfs: {type: "layers", diff_ids: [$d]},
	history: [{created: "1970-01-01T00:00:00Z", created_by: "hack/mkimage.sh"}]
}' >"$work/config.json"
cfg=$(sha "$work/config.json")

# --- OCI layout ---
lay=$work/oci
mkdir -p "$lay/blobs/sha256"
cp "$work/config.json" "$lay/blobs/sha256/$cfg"
gz=$(sha "$work/layer.tar.gz")
cp "$work/layer.tar.gz" "$lay/blobs/sha256/$gz"
jq -n --arg c "sha256:$cfg" --argjson cs "$(size "$work/config.json")" \
	--arg l "sha256:$gz" --argjson ls "$(size "$work/layer.tar.gz")" '{
	schemaVersion: 2,
	mediaType: "application/vnd.oci.image.manifest.v1+json",
	config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
	layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]
}' >"$work/manifest.json"
man=$(sha "$work/manifest.json")
cp "$work/manifest.json" "$lay/blobs/sha256/$man"
jq -n --arg m "sha256:$man" --argjson ms "$(size "$work/manifest.json")" '{
	schemaVersion: 2,
	mediaType: "application/vnd.oci.image.index.v1+json",
	manifests: [{
		mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
		platform: {architecture: "amd64", os: "linux"},
		annotations: {
			"org.opencontainers.image.ref.name": "latest",
			"io.containerd.image.name": "busybox:latest"
		}
	}]
}' >"$lay/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"

# --- docker save archive: manifest.json + <config>.json + <id>/layer.tar ---
dk=$work/docker
mkdir -p "$dk/$diff_id"
cp "$work/config.json" "$dk/$cfg.json"
cp "$work/layer.tar" "$dk/$diff_id/layer.tar"
jq -n --arg c "$cfg.json" --arg l "$diff_id/layer.tar" \
	'[{Config: $c, RepoTags: ["busybox:latest"], Layers: [$l]}]' >"$dk/manifest.json"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dk" -cf "$work/docker.tar" .

# Publish each output with a rename.
rm -rf "$oci"
mv "$lay" "$oci"
mv "$work/docker.tar" "$dtar"
echo "mkimage: built $oci and $dtar (config sha256:${cfg:0:12})"
