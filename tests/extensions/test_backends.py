"""An extension's services on containerd and podman too: rootfs from the extension, merged mounts."""

from __future__ import annotations


import pytest
from containerd_daemon import ContainerdDaemon, containerd  # noqa: F401  (fixture)
from daemon_process import DaemonProcess
from extensions.test_daemon import log_of, nfs
from podman_service import podman_service  # noqa: F401  (fixture)


@pytest.mark.parametrize("backend", ["containerd", "podman"])
def test_extension_services_on_other_backends(request, tmp_path, registry, pusher, busybox, backend):
    if backend == "containerd":
        extra = ["--containerd-address", request.getfixturevalue("containerd").address]
    else:
        extra = ["--podman-url", request.getfixturevalue("podman_service").url]
    reg = ["--authfile", str(registry.authfile), "--cert-dir", str(registry.cert_dir)]
    d = DaemonProcess(tmp_path, backend=backend, extra=reg + extra)
    d.start()
    try:
        pusher.image("siderolabs/nfs-utils", f"on-{backend}", nfs(f"4.0.0-{backend}", busybox))
        d.cli("extensions", "install", registry.ref("siderolabs/nfs-utils", f"on-{backend}"))
        d.wait_state("ext-rpcbind", "Running")
        d.wait(lambda: f"mount.nfs from the image 4.0.0-{backend}" in log_of(d, "ext-rpcbind"), what="merged mount")
        d.cli("extensions", "remove", "nfs-utils")
        assert d.client.services() == []
    finally:
        d.stop()


def test_dev_mode_runs_an_extension_image(tmp_path, busybox, skopeo_tool):
    from devmode.test_devmode import DevProcess
    from extensions.images import Image, extension_entries, oci_archive

    project = tmp_path / "project"
    project.mkdir()
    service = "name: greeter\ncontainer:\n  entrypoint: /bin/sh\n  args: ['-c', 'echo greeter from the image; exec sleep 1000']\nrestart: always\n"
    oci_archive(tmp_path / "greeter.tar", Image([extension_entries("greeter", {"greeter": service}, busybox=busybox)]))
    dev = DevProcess(project, "--backend", "runc", "--extension", f"oci-archive:{tmp_path}/greeter.tar", "--color", "never")
    try:
        dev.wait_line(r"^ext-greeter +\| greeter from the image$", timeout=60)
    finally:
        rc = dev.stop()
    assert rc == 0, dev.output
    assert (project / ".extvisor/state/extensions/installed/greeter").is_symlink()
