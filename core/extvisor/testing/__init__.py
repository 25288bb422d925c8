"""The public test kit for backends: busybox rootfs dirs, quick specs, and the contract.

Also a pytest plugin (entry point ``pytest11: extvisor``), so importing it stays cheap:
pydantic and the OCI builder are imported inside the functions that need them, and it
defines no fixture that runs by itself.

Holds the kit (``kit``: rootfs, spec, sink, harness) and the contract (``contract``).

May import: what a plugin may, ``extvisor.oci``, ``extvisor.documents`` and the plugin
surface. Never ``extvisor.runtime``, ``extvisor.server``, ``extvisor.client``,
``extvisor.extensions``, ``extvisor.remote`` or ``extvisor.plugins``.

A backend author subclasses :class:`BackendContract` in a test module::

    from extvisor.testing import BackendContract

    class TestMine(BackendContract):
        @pytest.fixture
        def backend_factory(self, tmp_path):
            return lambda: MyBackend(BackendConfig(state_dir=tmp_path / "state"))

        def leftovers(self, service_id):
            return []  # describe containers, processes, cgroups, mounts left behind
"""

from extvisor.testing.contract import BackendContract
from extvisor.testing.kit import CollectingSink, Harness, make_busybox_rootfs, make_service

__all__ = ["BackendContract", "CollectingSink", "Harness", "make_busybox_rootfs", "make_service"]
