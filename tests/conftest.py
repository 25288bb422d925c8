"""Fixtures shared by several test files."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "extvisor-tcp"
# The shared corpus of real service files lies beside the checkout (as CI lays it out).
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def require_corpus() -> Path:
    """The corpus, or a failure that says where it was looked for (a skip only with EXTVISOR_ALLOW_SKIP=1)."""
    if CORPUS.is_dir():
        return CORPUS
    message = f"the shared corpus is missing at {CORPUS} (shared/ belongs beside the checkout)"
    if os.environ.get("EXTVISOR_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message + " (or set EXTVISOR_ALLOW_SKIP=1 to skip)")


def pip(*args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="session")
def tcp_plugin():
    try:
        md.distribution("extvisor-tcp")
        was_installed = True
    except md.PackageNotFoundError:
        was_installed = False
    pip("install", "--no-deps", "--no-build-isolation", str(EXAMPLE))
    importlib.invalidate_caches()  # let this process see the new site-packages entries
    try:
        yield md.distribution("extvisor-tcp")
    finally:
        if not was_installed:
            pip("uninstall", "-y", "extvisor-tcp")
            importlib.invalidate_caches()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def _load_test_kinds():
    """The five Talos kinds, emulated without the conditions plugin (tests/fakedist/helpers)."""
    path = Path(__file__).parent / "fakedist" / "helpers" / "testkinds.py"
    spec = importlib.util.spec_from_file_location("extvisor_testkinds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KINDS


TEST_KINDS = _load_test_kinds()
