#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: set everything up, start the daemon with
# the hello-world example from the default directories, and show it running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

install -d /usr/local/etc/containers /usr/local/lib/containers /var/log/extvisor
install -m 0644 examples/hello-world/hello-world.yaml /usr/local/etc/containers/hello-world.yaml
sh examples/hello-world/build-rootfs.sh /usr/local/lib/containers/hello-world

if ! extvisor services >/dev/null 2>&1; then
  echo "starting: extvisor daemon (its log: /var/log/extvisor/daemon.log)"
  setsid extvisor daemon >>/var/log/extvisor/daemon.log 2>&1 </dev/null &
  echo $! >/run/extvisor-daemon.pid
fi
for _ in $(seq 1 100); do
  state=$(extvisor service ext-hello-world -o json 2>/dev/null | sed -n 's/^  "state": "\(.*\)",$/\1/p' || true)
  [ "$state" = "Running" ] && break
  sleep 0.1
done
sleep 1
echo; echo "\$ extvisor services"; extvisor services
echo; echo "\$ extvisor service ext-hello-world"; extvisor service ext-hello-world
echo; echo "\$ extvisor logs ext-hello-world --tail 5"; extvisor logs ext-hello-world --tail 5
echo
echo "Follow the log: extvisor logs -f ext-hello-world    Dashboard: extvisor dashboard"
echo "Stop the daemon (and every service): kill -TERM \$(cat /run/extvisor-daemon.pid)"
