"""Fixtures for the extension-image tests: the private registry, a store, the fetch options."""

from __future__ import annotations

from pathlib import Path

import pytest
from extensions.images import Pusher
from extensions.registry import Registry, require_tools

from extvisor.extensions import FetchOptions
from extvisor.extensions.check import default_kinds
from extvisor.extensions.image import default_talos
from extvisor.extensions.store import Store


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory):
    require_tools("docker-registry", "openssl", "htpasswd", "skopeo")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def pusher(registry: Registry):
    p = Pusher(f"https://{registry.host}", (registry.user, registry.password), registry.ca)
    yield p
    p.close()


@pytest.fixture
def reg_options(registry: Registry) -> FetchOptions:
    return FetchOptions(arch="amd64", authfile=str(registry.authfile), cert_dir=str(registry.cert_dir))


@pytest.fixture
def skopeo_tool() -> None:
    require_tools("skopeo")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "extensions")
    s.recover()
    return s


@pytest.fixture(scope="session")
def kinds():
    return default_kinds()


@pytest.fixture(scope="session")
def talos():
    return default_talos()


@pytest.fixture
def busybox():
    """busybox-static, for images whose services really run (and runc for the daemon tests)."""
    require_tools("runc", "busybox")
    from extensions.images import busybox_path

    return busybox_path()
