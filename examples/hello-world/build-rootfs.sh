#!/bin/sh
# Build the hello-world rootfs from busybox-static: build-rootfs.sh DEST (e.g. /usr/local/lib/containers/hello-world)
set -eu
dest=${1:?usage: build-rootfs.sh DEST}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "busybox not found: apt-get install busybox-static" >&2; exit 1; }
mkdir -p "$dest/bin" "$dest/proc" "$dest/sys" "$dest/dev" "$dest/etc" "$dest/tmp" "$dest/run"
# Replace, not overwrite: the binary may be running (re-running this script while the service runs).
cp "$busybox" "$dest/bin/.busybox.new" && mv -f "$dest/bin/.busybox.new" "$dest/bin/busybox"
for applet in sh echo sleep cat date env hostname ls; do ln -sf busybox "$dest/bin/$applet"; done
# Mount points for the host's /etc/hosts and /etc/resolv.conf: the root is read-only at run time.
: > "$dest/etc/hosts"; : > "$dest/etc/resolv.conf"
cat > "$dest/.hello-world.new" <<'SCRIPT'
#!/bin/sh
# A tiny long-running service: greets every GREETING_INTERVAL seconds, stops cleanly on SIGTERM.
greeting=hello
for arg in "$@"; do case "$arg" in --greeting=*) greeting=${arg#--greeting=};; esac; done
trap 'echo "hello-world: stopping"; exit 0' TERM INT
echo "hello-world: starting on $(hostname)"
i=0
while :; do
  i=$((i + 1))
  echo "hello-world: $greeting #$i"
  sleep "${GREETING_INTERVAL:-5}" & wait $!
done
SCRIPT
chmod 0755 "$dest/.hello-world.new" && mv -f "$dest/.hello-world.new" "$dest/hello-world"
echo "rootfs ready: $dest"
