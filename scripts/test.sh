#!/usr/bin/env bash
# Set everything up (Debian 12, as root) and run the whole test suite against real runc,
# containerd and podman. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest -q -ra "$@"
