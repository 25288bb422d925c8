#!/bin/sh
# Build the hello-world system extension image as an oci-archive, offline (busybox-static, skopeo):
#   build-image.sh OUT.tar      then: extvisor extensions install oci-archive:OUT.tar
# The image is what siderolabs/extensions builds: manifest.yaml and rootfs/, with the service at
# rootfs/usr/local/etc/containers/ and its root filesystem at rootfs/usr/local/lib/containers/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUT.tar}
command -v skopeo >/dev/null || { echo "skopeo not found: apt-get install skopeo" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/image/rootfs/usr/local/etc/containers" "$work/image/rootfs/usr/local/lib/containers"
cp "$here/manifest.yaml" "$work/image/manifest.yaml"
cp "$here/../hello-world/hello-world.yaml" "$work/image/rootfs/usr/local/etc/containers/hello-world.yaml"
sh "$here/../hello-world/build-rootfs.sh" "$work/image/rootfs/usr/local/lib/containers/hello-world" >/dev/null
tar --numeric-owner --owner=0 --group=0 -C "$work/image" -czf "$work/layer.tar.gz" manifest.yaml rootfs
policy=""
if [ ! -f /etc/containers/policy.json ]; then  # skopeo wants a signature policy even to write a file
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' > "$work/policy.json"
  policy="--policy $work/policy.json"
fi
mkdir -p "$(dirname "$out")"
rm -f "$out"
# skopeo's own tarball: transport turns a layer into a one-layer image for this machine's arch
skopeo $policy copy -q "tarball:$work/layer.tar.gz" "oci-archive:$out:v1.0.0"
echo "image ready: oci-archive:$out"
