#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: set everything up, start the daemon, install
# the hello-world system extension image (an oci-archive setup.sh built) and show it running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

install -d /var/log/extvisor
# Earlier versions of this script put hello-world into the config dir: the extension brings it now.
if cmp -s examples/hello-world/hello-world.yaml /usr/local/etc/containers/hello-world.yaml; then
  rm -f /usr/local/etc/containers/hello-world.yaml
fi

if ! extvisor services >/dev/null 2>&1; then
  echo "starting: extvisor daemon (its log: /var/log/extvisor/daemon.log)"
  setsid extvisor daemon >>/var/log/extvisor/daemon.log 2>&1 </dev/null &
  echo $! >/run/extvisor-daemon.pid
fi
for _ in $(seq 1 100); do extvisor services >/dev/null 2>&1 && break; sleep 0.1; done
image="oci-archive:$PWD/build/hello-world-extension.tar:v1.0.0"
echo; echo "\$ extvisor extensions validate $image"; extvisor extensions validate "$image"
echo; echo "\$ extvisor extensions install $image"; extvisor extensions install "$image"
echo; echo "\$ extvisor extensions"; extvisor extensions
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
