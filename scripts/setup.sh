#!/usr/bin/env bash
# Install everything extvisor needs on Debian 12 (as root): system packages, a virtualenv in
# .venv with extvisor and its extras, and /usr/local/bin/extvisor. Safe to run again.
#   scripts/setup.sh          runtime (all backends, dashboard)
#   scripts/setup.sh --dev    plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras="all"
[ "${1:-}" = "--dev" ] && extras="all,dev"

export DEBIAN_FRONTEND=noninteractive
# skopeo (fetch) and umoci, docker-registry, apache2-utils, openssl (the tests' private registry): extension
# images; uidmap: rootless podman (dev mode); systemd: systemd-analyze checks contrib/extvisor.service.
pkgs="runc containerd podman busybox-static iproute2 ca-certificates curl python3 python3-venv python3-pip tmux uidmap skopeo umoci docker-registry apache2-utils openssl systemd"
missing=""
for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # docker-registry is only a tool for the tests (they run their own): not a service on :5000.
  case " $missing " in *" docker-registry "*)
    [ -d /run/systemd/system ] && systemctl disable --now docker-registry >/dev/null 2>&1 || true ;;
  esac
fi
# Distributions that start the system containerd/podman socket do not concern us: tests and
# the daemon use private sockets or the ones given on the command line.

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$extras]"
# An editable install leaves our own modules uncompiled, and with PYTHONDONTWRITEBYTECODE set
# (as on CI machines) every CLI call would compile them again: ~18 ms of a ~75 ms call.
.venv/bin/python -m compileall -q core plugins >/dev/null
ln -sf "$PWD/.venv/bin/extvisor" /usr/local/bin/extvisor
# The hello-world system extension image that run-example.sh installs: built here, offline.
sh examples/hello-world-extension/build-image.sh build/hello-world-extension.tar >/dev/null
echo "setup: $(.venv/bin/extvisor --version)"
