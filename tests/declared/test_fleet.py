"""A declared node file applied to three real daemons (runc) from a private TLS registry, in
waves: first apply, the same file again, an upgrade of one image, a config change, a broken
generation that rolls back by itself and stops the wave, drift, an explicit rollback, a daemon
killed in the middle of an apply, roles and the confirmation (issue 28). The steps build on
each other, in file order."""

from __future__ import annotations

import json
import signal
import time

import pytest
import yaml
from extensions.images import Pusher
from extensions.registry import Registry, require_tools

from declared.fleet import IPS, Fleet, cli, ext_image

pytestmark = [pytest.mark.runc, pytest.mark.timeout(300)]
HEALTHY = "healthcheck:\n  test: [CMD-SHELL, 'true']\n  interval: 1s\n  timeout: 5s\n  retries: 1\n"
NEVER_HEALTHY = "healthcheck:\n  tcp: 127.0.0.1:1\n  interval: 1s\n  timeout: 1s\n  retries: 1\n  on_failure: none\n"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    require_tools("docker-registry", "openssl", "htpasswd", "skopeo", "runc", "busybox")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def pusher(registry: Registry):
    p = Pusher(f"https://{registry.host}", (registry.user, registry.password), registry.ca)
    yield p
    p.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, registry: Registry, pusher: Pusher):
    from extensions.images import busybox_path

    bb = busybox_path()
    f = Fleet(tmp_path_factory.mktemp("declared"), registry)
    f.images = {}  # type: ignore[attr-defined]
    for name, tag, script, extra in (
        ("alpha", "1.0.0", None, ""), ("alpha", "2.0.0", None, ""), ("beta", "1.0.0", None, ""),
        ("beta", "broken", "echo beta broken; exit 1", ""),
        ("gamma", "1.0.0", None, "depends:\n  - path: /nonexistent/never\n"),  # never Running
        ("delta", "1.0.0", None, HEALTHY), ("delta", "sick", None, NEVER_HEALTHY),
    ):  # fmt: skip
        version = {"broken": "1.1.0", "sick": "1.2.0"}.get(tag, tag)
        f.images[(name, tag)] = pusher.image(f"ext/{name}", tag, ext_image(name, version, bb, script, extra))
    f.registry = registry  # type: ignore[attr-defined]
    yield f
    f.stop()


def declared(fleet: Fleet, alpha: str = "1.0.0", beta: str = "1.0.0", greeting: str = "hello", extra: str = "",
             tail: str = "") -> str:  # fmt: skip
    host = fleet.registry.host  # type: ignore[attr-defined]
    text = (
        "apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n"
        f"  - image: {host}/ext/alpha:{alpha}\n  - image: {host}/ext/beta:{beta}\n{extra}"
        "---\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: beta\n"
        f"environment:\n  - GREETING={greeting}\n{tail}"
    )
    path = fleet.base / "node.yaml"
    path.write_text(text)
    return str(path)


def rows(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NODE", "RESULT", "GENERATION", "CHANGED", "DURATION"], out
    return {line.split()[0]: line.split() for line in lines[1:]}


def log_of(fleet: Fleet, ip: str, sid: str) -> str:
    return b"".join(fleet.daemons[ip].client.logs(sid)).decode(errors="replace")


def installed(fleet: Fleet, ip: str) -> dict[str, str]:
    return {e["name"]: e["version"] for e in fleet.daemons[ip].client.request("GET", "/v1/extensions")}


def test_validate_a_declared_file(fleet: Fleet) -> None:
    path = declared(fleet)
    r = cli(fleet.env, "validate", path)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = fleet.base / "bad.yaml"
    bad.write_text("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n  - image: nope\n"
                   "---\nkind: MachineConfig\n")  # fmt: skip
    r = cli(fleet.env, "validate", str(bad))
    assert r.returncode == 1
    assert f"{bad}:4:12: error: extensions.0.image: invalid image reference 'nope'" in r.stdout
    assert f"{bad}:6:7: error: kind: kind \"MachineConfig\" has no place in a declared node file" in r.stdout


def test_first_apply_in_waves(fleet: Fleet) -> None:
    plain = {ip: fleet.pids(ip)["ext-plain"] for ip in IPS}
    path = declared(fleet)
    r = fleet.run("admin", "apply", "-f", path, "--yes", "--max-parallel", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(r.stdout)
    for ip in IPS:
        assert got[ip][1:3] == ["applied", "1"], r.stdout
        assert "installed alpha 1.0.0, beta 1.0.0; restarted" in r.stdout
        d = fleet.daemons[ip]
        d.wait_state("ext-alpha", "Running")
        d.wait(lambda ip=ip: "beta 1.0.0 hello" in log_of(fleet, ip, "ext-beta"), what="beta got its environment")
        assert fleet.pids(ip)["ext-plain"] == plain[ip]  # untouched
    applied = json.loads(fleet.run("admin", "applied", "-o", "json").stdout)
    assert [a["node"] for a in applied] == IPS
    one = applied[0]
    assert one["generation"] == 1 and one["applied_by"] == "alice" and one["last"]["result"] == "applied"
    digest = fleet.images[("alpha", "1.0.0")]  # type: ignore[attr-defined]
    assert f"/ext/alpha:1.0.0@{digest}" in one["document"]  # the tag pinned to its digest
    assert "GREETING=hello" in one["document"]  # an admin sees the document whole
    reader = json.loads(fleet.run("reader", "applied", "-o", "json").stdout)[0]
    assert "GREETING=***" in reader["document"] and "hello" not in reader["document"]


def test_the_same_file_again_changes_nothing(fleet: Fleet) -> None:
    before = {ip: fleet.pids(ip) for ip in IPS}
    r = fleet.run("admin", "apply", "-f", declared(fleet), "--yes", "--max-parallel", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(row[1:4] == ["unchanged", "1", "-"] for row in rows(r.stdout).values()), r.stdout
    assert {ip: fleet.pids(ip) for ip in IPS} == before
    d = fleet.run("reader", "diff", "-f", declared(fleet))
    assert d.returncode == 0 and d.stdout.count("No changes.") == 3, d.stdout + d.stderr


def test_an_upgrade_restarts_only_its_services(fleet: Fleet) -> None:
    before = {ip: fleet.pids(ip) for ip in IPS}
    path = declared(fleet, alpha="2.0.0")
    d = fleet.run("reader", "diff", "-f", path)
    assert d.returncode == 1, d.stdout + d.stderr
    assert "upgrade alpha 1.0.0" in d.stdout and "restart ext-alpha" in d.stdout
    r = fleet.run("admin", "apply", "-f", path, "--yes")  # one node at a time
    assert r.returncode == 0, r.stdout + r.stderr
    for ip in IPS:
        assert rows(r.stdout)[ip][1:3] == ["applied", "2"]
        now = fleet.pids(ip)
        assert now["ext-alpha"] != before[ip]["ext-alpha"]
        assert now["ext-beta"] == before[ip]["ext-beta"] and now["ext-plain"] == before[ip]["ext-plain"]
        assert installed(fleet, ip) == {"alpha": "2.0.0", "beta": "1.0.0"}
    assert "upgraded alpha 1.0.0 -> 2.0.0; restarted ext-alpha" in r.stdout


def test_a_config_change_restarts_only_its_service_and_diff_masks_it(fleet: Fleet) -> None:
    before = {ip: fleet.pids(ip) for ip in IPS}
    path = declared(fleet, alpha="2.0.0", greeting="bonjour")
    d = fleet.run("reader", "diff", "-f", path, "-n", IPS[0])
    assert d.returncode == 1, d.stdout + d.stderr
    assert "-- GREETING=***" in d.stdout and "+- GREETING=*** (changed)" in d.stdout
    assert "bonjour" not in d.stdout and "hello" not in d.stdout
    assert "restart ext-beta" in d.stdout
    r = fleet.run("admin", "apply", "-f", path, "--yes", "--canary", "1", "--max-parallel", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    for ip in IPS:
        now = fleet.pids(ip)
        assert now["ext-beta"] != before[ip]["ext-beta"]
        assert now["ext-alpha"] == before[ip]["ext-alpha"] and now["ext-plain"] == before[ip]["ext-plain"]
        fleet.daemons[ip].wait(lambda ip=ip: "bonjour" in log_of(fleet, ip, "ext-beta"), what="new environment")
    assert "restarted ext-beta" in r.stdout


def test_a_broken_generation_rolls_back_by_itself_and_stops_the_wave(fleet: Fleet) -> None:
    before = {ip: fleet.pids(ip) for ip in IPS}
    path = declared(fleet, alpha="2.0.0", beta="broken", greeting="bonjour")
    r = fleet.run("admin", "apply", "-f", path, "--yes", "--timeout", "40s")
    assert r.returncode == 1, r.stdout + r.stderr
    got = rows(r.stdout)
    assert got[IPS[0]][1:4] == ["rolled", "back", "3"], r.stdout
    assert got[IPS[1]][1] == "skipped" and got[IPS[2]][1] == "skipped"
    assert f"{IPS[0]}: rolled back: ext-beta exited" in r.stderr or f"{IPS[0]}: rolled back: ext-beta failed" in r.stderr, r.stderr
    d = fleet.daemons[IPS[0]]
    assert installed(fleet, IPS[0]) == {"alpha": "2.0.0", "beta": "1.0.0"}
    d.wait_state("ext-beta", "Running")
    d.wait(lambda: log_of(fleet, IPS[0], "ext-beta").rstrip().endswith("beta 1.0.0 bonjour"), what="old beta back")
    assert fleet.pids(IPS[0])["ext-alpha"] == before[IPS[0]]["ext-alpha"]
    for ip in IPS[1:]:  # not reached: untouched
        assert fleet.pids(ip) == before[ip]
    [info] = json.loads(fleet.run("reader", "applied", "-n", IPS[0], "-o", "json").stdout)
    assert info["generation"] == 3 and info["last"]["result"] == "rolled back"
    assert "ext-beta" in info["last"]["reason"]
    trees = list((d.state_dir / "extensions" / "trees").iterdir())
    assert len(trees) == 3  # beta 1.0.0, alpha 2.0.0, and alpha 1.0.0 kept for generation 1; the broken one gone


def test_drift_is_shown_by_diff(fleet: Fleet) -> None:
    d = fleet.daemons[IPS[2]]
    d.cli("extensions", "remove", "alpha")  # by hand, on the node
    path = declared(fleet, alpha="2.0.0", greeting="bonjour")
    r = fleet.run("reader", "diff", "-f", path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "alpha 2.0.0 removed by hand since generation 3" in r.stdout
    assert r.stdout.count("No changes.") == 2  # the two other nodes
    r = fleet.run("admin", "apply", "-f", path, "-n", IPS[2])
    assert r.returncode == 0 and rows(r.stdout)[IPS[2]][1] == "applied", r.stdout + r.stderr
    assert installed(fleet, IPS[2]) == {"alpha": "2.0.0", "beta": "1.0.0"}


def test_rollback_returns_to_the_previous_generation(fleet: Fleet) -> None:
    r = fleet.run("admin", "rollback", "-n", IPS[0])
    assert r.returncode == 0, r.stdout + r.stderr
    assert rows(r.stdout)[IPS[0]][1:4] == ["rolled", "back", "2"], r.stdout
    assert installed(fleet, IPS[0]) == {"alpha": "2.0.0", "beta": "1.0.0"}
    fleet.daemons[IPS[0]].wait(lambda: "hello" in log_of(fleet, IPS[0], "ext-beta").splitlines()[-1], what="hello again")
    [info] = json.loads(fleet.run("reader", "applied", "-n", IPS[0], "-o", "json").stdout)
    assert info["generation"] == 2 and "back to generation 2 from 3" in info["last"]["reason"]


def test_a_daemon_killed_mid_apply_comes_back_on_the_last_good_generation(fleet: Fleet) -> None:
    import subprocess
    import sys

    ip = IPS[1]
    d = fleet.daemons[ip]
    host = fleet.registry.host  # type: ignore[attr-defined]
    path = declared(fleet, alpha="2.0.0", greeting="bonjour", extra=f"  - image: {host}/ext/gamma:1.0.0\n")
    proc = subprocess.Popen([sys.executable, "-m", "extvisor", "apply", "-f", path, "-n", ip, "--timeout", "60s",
                             "--config", str(fleet.configs["admin"])], env=fleet.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    d.wait(lambda: "ext-gamma" in fleet.pids(ip), timeout=60, what="gamma added")
    assert (d.state_dir / "declared" / "pending.json").exists()
    d.stop(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "failed" in out, out + err
    d.start()
    assert installed(fleet, ip) == {"alpha": "2.0.0", "beta": "1.0.0"}
    assert "ext-gamma" not in fleet.pids(ip)
    d.wait_state("ext-beta", "Running")
    [info] = json.loads(fleet.run("reader", "applied", "-n", ip, "-o", "json").stdout)
    assert info["generation"] == 3 and info["last"]["result"] == "rolled back"
    assert "the daemon stopped while generation 4 was being applied; back on generation 3" in info["last"]["reason"]
    assert not (d.state_dir / "declared" / "pending.json").exists()
    assert yaml.safe_load_all(info["document"])  # still the generation-3 document


def test_roles_and_confirmation(fleet: Fleet) -> None:
    path = declared(fleet, alpha="1.0.0")
    r = fleet.run("reader", "apply", "-f", path, "--yes")
    assert r.returncode == 1 and r.stdout.count("failed") == 1 and "not authorized" in r.stderr, r.stdout + r.stderr
    r = fleet.run("reader", "rollback", "--yes", "-n", IPS[0])
    assert r.returncode == 1 and "not authorized" in r.stderr
    before = {ip: fleet.pids(ip) for ip in IPS}
    r = fleet.run("admin", "apply", "-f", path)  # three nodes, no terminal, no --yes
    assert r.returncode == 1 and "there is no terminal to confirm on: pass --yes" in r.stderr
    assert {ip: fleet.pids(ip) for ip in IPS} == before
    assert all(installed(fleet, ip)["alpha"] == "2.0.0" for ip in IPS)
    time.sleep(0)  # nothing else was sent


def test_an_unreachable_node_fails_and_stops_the_rollout(fleet: Fleet) -> None:
    before = fleet.pids(IPS[0])
    path = declared(fleet, alpha="1.0.0")
    r = fleet.run("admin", "apply", "-f", path, "-n", f"127.0.0.9,{IPS[0]}", "--yes", "-o", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    got = {row["node"]: row for row in json.loads(r.stdout)}
    assert got["127.0.0.9"]["result"] == "failed" and "connection refused" in got["127.0.0.9"]["reason"], r.stdout
    assert got[IPS[0]]["result"] == "skipped" and fleet.pids(IPS[0]) == before


def test_more_than_one_node_asks_on_a_terminal(fleet: Fleet) -> None:
    import os
    import pty
    import subprocess
    import sys

    before = {ip: fleet.pids(ip) for ip in IPS}
    path = declared(fleet, alpha="1.0.0")
    main, tty = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "extvisor", "apply", "-f", path, "--config", str(fleet.configs["admin"])],
                            env=fleet.env, stdin=tty, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(tty)
    os.write(main, b"n\n")
    out, err = proc.communicate(timeout=60)
    os.close(main)
    assert proc.returncode == 1, out + err
    assert f"apply node.yaml on 3 nodes ({', '.join(IPS)})? [y/N]" in err and "cancelled: nothing was changed" in err
    assert {ip: fleet.pids(ip) for ip in IPS} == before


def test_the_file_carries_its_image_verification_config(fleet: Fleet) -> None:
    ip = IPS[0]  # on generation 2: alpha 2.0.0, beta 1.0.0, hello
    d = fleet.daemons[ip]
    host = fleet.registry.host  # type: ignore[attr-defined]
    before, had = fleet.pids(ip), installed(fleet, ip)

    def ivc(action: str) -> str:
        return f'---\napiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules:\n  - image: "{host}/ext/*"\n    {action}: true\n'

    denied = declared(fleet, alpha="2.0.0", tail=ivc("deny"))
    assert cli(fleet.env, "validate", denied).returncode == 0
    r = fleet.run("admin", "apply", "-f", denied, "-n", ip)
    assert r.returncode == 1 and rows(r.stdout)[ip][1] == "failed", r.stdout + r.stderr
    assert "refused by rule 0" in r.stderr and "deny" in r.stderr
    assert fleet.pids(ip) == before and installed(fleet, ip) == had
    assert "ImageVerificationConfig" not in (d.service_config_dir / "00-declared.yaml").read_text()

    skipped = declared(fleet, alpha="2.0.0", tail=ivc("skip"))
    r = fleet.run("admin", "apply", "-f", skipped, "-n", ip)
    assert r.returncode == 0 and rows(r.stdout)[ip][1:4] == ["applied", "4", "-"], r.stdout + r.stderr
    assert fleet.pids(ip) == before  # a new trust document restarts nothing
    assert "kind: ImageVerificationConfig" in (d.service_config_dir / "00-declared.yaml").read_text()

    (d.service_config_dir / "other.yaml").write_text(ivc("skip").removeprefix("---\n"))
    try:
        r = fleet.run("admin", "apply", "-f", skipped, "-n", ip)
        assert r.returncode == 1 and "other.yaml already holds an ImageVerificationConfig" in r.stderr, r.stdout + r.stderr
    finally:
        (d.service_config_dir / "other.yaml").unlink()


def test_the_gate_waits_for_health_and_a_check_that_never_passes_rolls_back(fleet: Fleet) -> None:
    ip = IPS[1]  # on generation 3: alpha 2.0.0, beta 1.0.0, bonjour
    d = fleet.daemons[ip]
    host = fleet.registry.host  # type: ignore[attr-defined]
    good = declared(fleet, alpha="2.0.0", greeting="bonjour", extra=f"  - image: {host}/ext/delta:1.0.0\n")
    r = fleet.run("admin", "apply", "-f", good, "-n", ip, "--timeout", "60s")
    assert r.returncode == 0 and rows(r.stdout)[ip][1:3] == ["applied", "4"], r.stdout + r.stderr
    health = d.service("ext-delta")["health"]
    assert not health["unknown"] and health["healthy"], health  # applied only once its check passed
    before = fleet.pids(ip)
    sick = declared(fleet, alpha="2.0.0", greeting="bonjour", extra=f"  - image: {host}/ext/delta:sick\n")
    r = fleet.run("admin", "apply", "-f", sick, "-n", ip, "--timeout", "8s")
    assert r.returncode == 1 and rows(r.stdout)[ip][1:4] == ["rolled", "back", "4"], r.stdout + r.stderr
    assert "ext-delta" in r.stderr and ("unhealthy" in r.stderr or "first health check" in r.stderr), r.stderr
    assert installed(fleet, ip)["delta"] == "1.0.0"
    d.wait(lambda: d.service("ext-delta")["state"] == "Running" and d.service("ext-delta")["health"]["healthy"],
           timeout=30, what="delta 1.0.0 healthy again")  # fmt: skip
    now = fleet.pids(ip)
    assert {k: v for k, v in now.items() if k != "ext-delta"} == {k: v for k, v in before.items() if k != "ext-delta"}


def test_a_restart_converges_to_the_last_good_generation_without_the_registry(fleet: Fleet) -> None:
    ip = IPS[2]
    d = fleet.daemons[ip]
    host = fleet.registry.host  # type: ignore[attr-defined]
    [before] = json.loads(fleet.run("reader", "applied", "-n", ip, "-o", "json").stdout)
    d.cli("extensions", "install", f"docker://{host}/ext/gamma:1.0.0")  # by hand, since the last apply
    assert installed(fleet, ip) == {"alpha": "2.0.0", "beta": "1.0.0", "gamma": "1.0.0"}
    fleet.registry.stop()  # type: ignore[attr-defined]  # the images are in the store: nothing to reach
    assert d.stop() == 0
    d.start()
    assert installed(fleet, ip) == {"alpha": "2.0.0", "beta": "1.0.0"}
    assert "ext-gamma" not in fleet.pids(ip)
    d.wait_state("ext-alpha", "Running")
    d.wait_state("ext-beta", "Running")
    [after] = json.loads(fleet.run("reader", "applied", "-n", ip, "-o", "json").stdout)
    assert after["generation"] == before["generation"] and after["document"] == before["document"]
    assert "declared state: converged to generation" in d.log() and "gamma removed" in d.log()
