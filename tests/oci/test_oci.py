"""The OCI runtime spec built for a service, and the rootfs checks, against Talos's choices."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from extvisor.documents.models import ServiceSpec
from extvisor.oci import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    ContainerSpecError,
    build_oci_spec,
    check_rootfs,
    create_missing_sources,
    fit_to_host,
    grantable_capabilities,
    merge_environment,
)


def svc(**container) -> ServiceSpec:
    container.setdefault("entrypoint", "/bin/hello")
    return ServiceSpec.model_validate({"name": "hello", "container": container})


def oci(**container):
    return build_oci_spec(svc(**container), Path("/rootfs/hello"))


# -- the spec --------------------------------------------------------------------------


def test_process_defaults() -> None:
    spec = oci(args=["-v", "x"])
    process = spec["process"]
    assert process["args"] == ["/bin/hello", "-v", "x"]
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["terminal"] is False
    assert process["noNewPrivileges"] is True
    assert process["oomScoreAdj"] == -600
    assert "rlimits" not in process  # inherited from the daemon, as under Talos
    assert "hostname" not in spec  # the container keeps the node's, as under Talos
    assert spec["root"] == {"path": "/rootfs/hello", "readonly": True}
    assert spec["linux"]["cgroupsPath"] == "/extvisor/ext-hello"  # the daemon passes /extvisor/<instance>


def test_masked_and_readonly_paths_default_vs_empty() -> None:
    default = oci()["linux"]
    assert default["maskedPaths"] == DEFAULT_MASKED_PATHS
    assert default["readonlyPaths"] == DEFAULT_READONLY_PATHS
    assert "/proc/kcore" in default["maskedPaths"] and "/proc/sys" in default["readonlyPaths"]
    cleared = oci(security={"maskedPaths": [], "readonlyPaths": []})["linux"]
    assert cleared["maskedPaths"] == [] and cleared["readonlyPaths"] == []
    given = oci(security={"maskedPaths": ["/proc/x"]})["linux"]
    assert given["maskedPaths"] == ["/proc/x"] and given["readonlyPaths"] == DEFAULT_READONLY_PATHS


def test_masked_defaults_are_a_copy() -> None:
    oci()["linux"]["maskedPaths"].append("/changed")
    assert "/changed" not in DEFAULT_MASKED_PATHS


def test_writeable_rootfs_and_sysfs() -> None:
    assert oci(security={"writeableRootfs": True})["root"]["readonly"] is False
    sys_ro = next(m for m in oci()["mounts"] if m["destination"] == "/sys")
    assert "ro" in sys_ro["options"]
    sys_rw = next(m for m in oci(security={"writeableSysfs": True})["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_rw["options"]


def test_rootfs_propagation_only_when_set() -> None:
    assert "rootfsPropagation" not in oci()["linux"]
    assert oci(security={"rootfsPropagation": "shared"})["linux"]["rootfsPropagation"] == "shared"


def test_environment_is_exactly_what_is_given() -> None:
    assert oci(environment=["FOO=BAR"])["process"]["env"] == ["FOO=BAR"]
    assert oci()["process"]["env"] == []  # no PATH unless given


def test_environment_merge_order() -> None:
    spec = build_oci_spec(
        svc(environment=["B=spec", "C=spec", "D=spec"]),
        Path("/r"),
        env_file=["A=file", "B=file"],
        extra_env=["C=extra", "E=extra"],
    )
    assert spec["process"]["env"] == ["A=file", "B=spec", "C=extra", "D=spec", "E=extra"]


def test_merge_environment_rules() -> None:
    assert merge_environment(["A=1", "B=2"], ["A=3"]) == ["A=3", "B=2"]  # first position kept
    assert merge_environment(["A=1", "B=2"], ["A"]) == ["B=2"]  # a bare key removes it
    assert merge_environment(["X=a=b"]) == ["X=a=b"]
    assert merge_environment(["A="]) == ["A="]


def test_capabilities() -> None:
    caps = oci()["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert "CAP_SYS_BOOT" not in caps["bounding"] and "CAP_SYS_MODULE" not in caps["bounding"]
    assert "CAP_SYS_ADMIN" in caps["bounding"] and "CAP_NET_ADMIN" in caps["bounding"]
    assert caps["bounding"] == grantable_capabilities()


def own_caps(field: str) -> int:
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1], 16) for line in lines if line.startswith(field + ":"))


def test_capabilities_stay_within_our_bounding_set() -> None:
    from extvisor.oci import _CAPABILITIES

    bounding = own_caps("CapBnd")

    for cap in grantable_capabilities():
        assert bounding >> _CAPABILITIES.index(cap) & 1, cap


def test_namespaces_pid_uts_mount_only() -> None:
    # Host network and IPC, as Talos.
    assert oci()["linux"]["namespaces"] == [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}]


def test_etc_hosts_and_resolv_conf_are_read_only_binds() -> None:
    mounts = {m["destination"]: m for m in oci()["mounts"]}
    for path in ("/etc/hosts", "/etc/resolv.conf"):
        assert mounts[path] == {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}


def test_default_mounts_then_spec_then_extra() -> None:
    user = {"destination": "/data", "type": "bind", "source": "/var/data", "options": ["rbind", "rw"]}
    extra = {"destination": "/etc/conf", "type": "bind", "source": "/x/conf", "options": ["bind", "ro"]}
    spec = build_oci_spec(svc(mounts=[user]), Path("/r"), extra_mounts=[extra])
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[:8] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/run", "/sys/fs/cgroup"]
    assert dests[-2:] == ["/data", "/etc/conf"]
    assert spec["mounts"][-2] == user


def test_mount_without_options_and_with_idmaps() -> None:
    idmap = [{"containerID": 0, "hostID": 1000, "size": 1}]
    out = oci(mounts=[{"destination": "/d", "type": "tmpfs", "source": "tmpfs", "uidmappings": idmap}])["mounts"][-1]
    assert "options" not in out
    assert out["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]


def test_all_devices_allowed() -> None:
    assert oci()["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_fit_to_host_keeps_or_raises_oom_score_adj() -> None:
    spec = oci()
    fitted = copy.deepcopy(spec)
    notes = fit_to_host(fitted)
    if own_caps("CapEff") >> 24 & 1:
        assert fitted == spec and notes == []
    else:
        own = int(Path("/proc/self/oom_score_adj").read_text())
        assert fitted["process"]["oomScoreAdj"] == max(-600, own)
        assert notes and "CAP_SYS_RESOURCE" in notes[0]
    assert fit_to_host(fitted) == []  # idempotent


# -- check_rootfs ----------------------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "hello"
    (root / "bin").mkdir(parents=True)
    exe = root / "bin" / "hello"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def test_good_rootfs(rootfs: Path) -> None:
    check_rootfs(svc(entrypoint="/bin/hello"), rootfs)
    check_rootfs(svc(entrypoint="./bin/hello"), rootfs)  # relative to cwd /
    check_rootfs(svc(entrypoint="hello"), rootfs)  # looked up in PATH by the runtime


def test_missing_rootfs(tmp_path: Path) -> None:
    with pytest.raises(ContainerSpecError, match="rootfs .*nope.* does not exist"):
        check_rootfs(svc(), tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ContainerSpecError, match="not a directory"):
        check_rootfs(svc(), tmp_path / "file")


def test_missing_entrypoint(rootfs: Path) -> None:
    with pytest.raises(ContainerSpecError, match="/bin/nope.*not found"):
        check_rootfs(svc(entrypoint="/bin/nope"), rootfs)


def test_entrypoint_not_executable(rootfs: Path) -> None:
    (rootfs / "bin" / "data").write_text("x")
    with pytest.raises(ContainerSpecError, match="not an executable"):
        check_rootfs(svc(entrypoint="/bin/data"), rootfs)
    with pytest.raises(ContainerSpecError, match="not an executable"):
        check_rootfs(svc(entrypoint="/bin"), rootfs)


def test_entrypoint_with_dotdot(rootfs: Path) -> None:
    with pytest.raises(ContainerSpecError, match=r"'\.\.'"):
        check_rootfs(svc(entrypoint="/bin/../bin/hello"), rootfs)


def test_relative_symlink_escaping_the_root(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (rootfs / "bin" / "escape").symlink_to("../../outside")  # exists on the host
    with pytest.raises(ContainerSpecError, match="outside the rootfs"):
        check_rootfs(svc(entrypoint="/bin/escape"), rootfs)
    (rootfs / "bin" / "deep").symlink_to("../../../../../../bin/sh")
    with pytest.raises(ContainerSpecError, match="outside the rootfs"):
        check_rootfs(svc(entrypoint="/bin/deep"), rootfs)


def test_symlinked_directory_escaping_the_root(rootfs: Path) -> None:
    (rootfs / "usr").symlink_to("../../../../../usr")
    with pytest.raises(ContainerSpecError, match="outside the rootfs"):
        check_rootfs(svc(entrypoint="/usr/bin/env"), rootfs)


def test_absolute_symlink_resolves_inside(rootfs: Path) -> None:
    (rootfs / "bin" / "sh").symlink_to("/bin/hello")  # on the host /bin/hello does not exist
    check_rootfs(svc(entrypoint="/bin/sh"), rootfs)
    (rootfs / "bin" / "gone").symlink_to("/bin/missing")  # while the host's /bin/sh... is irrelevant
    with pytest.raises(ContainerSpecError, match="not found"):
        check_rootfs(svc(entrypoint="/bin/gone"), rootfs)


def test_absolute_symlink_to_a_host_path_is_looked_up_in_the_root(rootfs: Path) -> None:
    # /bin/true exists on the host but not in the rootfs: the container would not find it.
    assert os.path.exists("/bin/true")
    (rootfs / "bin" / "t").symlink_to("/bin/true")
    with pytest.raises(ContainerSpecError, match="not found"):
        check_rootfs(svc(entrypoint="/bin/t"), rootfs)


def test_relative_symlink_inside_is_ok(rootfs: Path) -> None:
    (rootfs / "sbin").symlink_to("bin")
    (rootfs / "bin" / "rel").symlink_to("./hello")
    check_rootfs(svc(entrypoint="/sbin/rel"), rootfs)


def test_symlink_loop(rootfs: Path) -> None:
    (rootfs / "bin" / "a").symlink_to("/bin/b")
    (rootfs / "bin" / "b").symlink_to("/bin/a")
    with pytest.raises(ContainerSpecError, match="too many symlinks"):
        check_rootfs(svc(entrypoint="/bin/a"), rootfs)


def test_entrypoint_under_a_mount_is_not_checked(rootfs: Path) -> None:
    mount = {"destination": "/opt/tools", "type": "bind", "source": "/usr/bin", "options": ["rbind", "ro"]}
    check_rootfs(svc(entrypoint="/opt/tools/whatever", mounts=[mount]), rootfs)
    check_rootfs(svc(entrypoint="/opt/tools", mounts=[mount]), rootfs)
    with pytest.raises(ContainerSpecError, match="not found"):  # a sibling path is still checked
        check_rootfs(svc(entrypoint="/opt/toolsx/run", mounts=[mount]), rootfs)


def test_create_missing_sources(tmp_path: Path) -> None:
    src = tmp_path / "a" / "b"
    existing = tmp_path / "exists"
    existing.mkdir(mode=0o755)
    mounts = [
        {"destination": "/a", "type": "bind", "source": str(src), "options": ["rbind"]},
        {"destination": "/e", "type": "bind", "source": str(existing), "options": ["rbind"]},
        {"destination": "/p", "type": "proc", "source": "proc"},
    ]
    create_missing_sources(svc(mounts=mounts))
    assert src.is_dir() and (src.stat().st_mode & 0o777) == 0o700
    assert (existing.stat().st_mode & 0o777) == 0o755
    assert not Path("proc").exists()


def test_fit_to_rootless_binds_the_hosts_sysfs_and_mqueue(tmp_path) -> None:
    from extvisor.oci import fit_to_rootless

    spec = oci()
    notes = fit_to_rootless(spec, mqueue=str(tmp_path / "none"))
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert by_dest["/sys"] == {"destination": "/sys", "type": "bind", "source": "/sys",
                               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}  # fmt: skip
    assert "/sys/fs/cgroup" not in by_dest  # comes with the recursive bind
    assert by_dest["/dev/mqueue"]["type"] == "tmpfs"  # the host has none
    assert any("the host has no" in n for n in notes)
    (tmp_path / "mq").mkdir()
    spec = oci()
    fit_to_rootless(spec, mqueue=str(tmp_path / "mq"))
    assert {m["destination"]: m for m in spec["mounts"]}["/dev/mqueue"]["source"] == str(tmp_path / "mq")
    # A private network namespace can have a sysfs of its own: left alone.
    spec = oci()
    spec["linux"]["namespaces"].append({"type": "network"})
    fit_to_rootless(spec)
    assert {m["destination"]: m for m in spec["mounts"]}["/sys"]["type"] == "sysfs"
