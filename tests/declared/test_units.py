"""The declared file's reading, the plan and drift, waves, and the on-disk files, without daemons."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from extvisor.client.declared import changed_text, parse_duration, rollout
from extvisor.documents.declared import fetch_ref, load_declared, mask_text, pinned, split_image
from extvisor.extensions.store import Installed
from extvisor.server.declared.files import Files, NodeState
from extvisor.server.declared.plan import config_changes, plan

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64

FILE = """\
apiVersion: v1alpha1
kind: SystemExtensionsConfig
extensions:
  - image: reg.example:5000/ext/nut-client:2.8.2
  - image: reg.example:5000/ext/lldpd@{d2}
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: nut-client
environment:
  - UPS_PASSWORD=hunter2
configFiles:
  - content: "secret file"
    mountPath: /etc/nut/upsmon.conf
""".format(d2=D2)


def test_a_declared_file_reads_and_renders_pinned():
    node, findings = load_declared(FILE, "node.yaml")
    assert findings == [] and node is not None
    assert node.images == ["reg.example:5000/ext/nut-client:2.8.2", f"reg.example:5000/ext/lldpd@{D2}"]
    assert node.lines == [4, 5]
    assert [c.name for c in node.configs] == ["nut-client"]
    text = node.render([pinned(i, D1) for i in node.images])
    again, findings = load_declared(text, "again.yaml")
    assert findings == [] and again is not None
    assert again.images[0] == f"reg.example:5000/ext/nut-client:2.8.2@{D1}"
    assert again.config_text() == node.config_text()


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("kind: SystemExtensionsConfig\napiVersion: v1alpha1\nextensions:\n  - image: reg/x:1\n  - image: reg/x:2\n",
         "t.yaml:5:12", "reg/x is declared twice (also at line 4)"),
        ("apiVersion: v1alpha2\nkind: SystemExtensionsConfig\n", "t.yaml:1:13", "apiVersion must be v1alpha1"),
        ("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n  - image: oci:relative/dir\n",
         "t.yaml:4:12", "a local image path must be absolute"),
        ("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\n---\napiVersion: v1alpha1\nkind: SystemExtensionsConfig\n",
         "t.yaml:5:7", "a second SystemExtensionsConfig document (the first is at line 1)"),
        ("apiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: x\nenvironment: [A=1]\n", "t.yaml:1:1",
         "no SystemExtensionsConfig document"),
        ("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\n---\napiVersion: v1alpha1\nkind: ImageVerificationConfig\n"
         "rules: [{image: '*', deny: true}]\n---\napiVersion: v1alpha1\nkind: ImageVerificationConfig\nrules: []\n",
         "t.yaml:9:7", "a second ImageVerificationConfig document (the first is at line 4)"),
        ("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\n---\napiVersion: v1alpha1\nkind: ImageVerificationConfig\n"
         "rules:\n  - image: '*'\n    keyless: {}\n", "t.yaml:8:5", "keyless rules are not supported"),
        ("apiVersion: v1alpha1\nkind: SystemExtensionsConfig\nextensions:\n  - image: reg/x@sha256:12\n",
         "t.yaml:4:12", "a digest is sha256: and 64 hex digits"),
    ],
)  # fmt: skip
def test_bad_declared_files_are_refused_at_their_line(text, where, message):
    node, findings = load_declared(text, "t.yaml")
    assert node is None
    assert any(str(f).startswith(where) and message in str(f) for f in findings), [str(f) for f in findings]


def test_references_for_skopeo():
    assert split_image("reg:5000/a/b") == ("docker", "reg:5000/a/b", "latest", "")
    assert fetch_ref(f"reg/a:1@{D1}") == f"docker://reg/a@{D1}"  # skopeo takes no tag beside a digest
    assert fetch_ref("docker://reg/a:1") == "docker://reg/a:1"
    assert pinned("docker://reg/a:1", D1) == f"docker://reg/a:1@{D1}"
    assert fetch_ref(f"oci-archive:/x/y.tar@{D1}") == "oci-archive:/x/y.tar"


def test_secrets_are_masked_and_a_changed_one_said():
    node, _ = load_declared(FILE, "node.yaml")
    masked = mask_text(node.config_text())
    assert "hunter2" not in masked and "secret file" not in masked and "UPS_PASSWORD=***" in masked
    changed = config_changes(node.config_text(), node.config_text().replace("hunter2", "hunter3"))
    assert [c["action"] for c in changed] == ["change"]
    diff = changed[0]["diff"]
    assert "\n-- UPS_PASSWORD=***\n+- UPS_PASSWORD=*** (changed)\n" in diff
    assert "hunter" not in diff
    assert config_changes(node.config_text(), node.config_text()) == []


def record(name: str, digest: str, ref: str, version: str = "1.0.0") -> Installed:
    return Installed(name=name, version=version, author="", description="", digest=digest, ref=ref,
                     services=[f"ext-{name}"], seq=0, tree=Path("/nonexistent") / name)  # fmt: skip


def test_plan_matches_by_digest_then_repository_and_shows_drift():
    node, _ = load_declared(FILE, "node.yaml")
    installed = {"nut-client": record("nut-client", D3, "reg.example:5000/ext/nut-client:2.8.1", "2.8.1"),
                 "lldpd": record("lldpd", D2, f"reg.example:5000/ext/lldpd@{D2}"),
                 "extra": record("extra", D3, "reg.example:5000/ext/extra:1")}  # fmt: skip
    gen = {"generation": 4, "state": {"configs": "", "extensions": {
        "nut-client": {"digest": D3, "image": "reg.example:5000/ext/nut-client:2.8.1", "version": "2.8.1"},
        "lldpd": {"digest": D2, "image": "x", "version": "1.0.0"},
        "gone": {"digest": D1, "image": "reg.example:5000/ext/gone:1", "version": "0.1"}}}}  # fmt: skip
    got = plan(node, [D1, D2], installed, {}, "", gen, ["ext-nut-client", "ext-lldpd", "ext-extra"])
    actions = {(i["action"], i["name"]) for i in got["extensions"]}
    assert actions == {("upgrade", "nut-client"), ("unchanged", "lldpd"), ("remove", "extra")}
    assert got["changed"] and got["restart"] == ["ext-nut-client"] and got["stop"] == ["ext-extra"]
    assert got["drift"] == [
        "extra 1.0.0 (sha256:333333333333) installed by hand since generation 4",
        "gone 0.1 removed by hand since generation 4",
    ]
    assert [c["action"] for c in got["configs"]] == ["add"]


def test_waves_canary_parallel_stop_and_skip():
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def run(node: str) -> dict:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.append((node, time.monotonic()))
        time.sleep(0 if node == "n4" else 0.05)
        with lock:
            running[0] -= 1
        return {"result": "failed" if node == "n4" else "applied"}

    nodes = [f"n{i}" for i in range(1, 9)]
    got = [r["result"] for r in rollout(nodes, run, canary=1, max_parallel=2)]
    assert got[:4] == ["applied", "applied", "applied", "failed"]
    first = got.index("skipped")  # stopped at the failure: what was running ends, nothing new starts
    assert first <= 5 and set(got[first:]) == {"skipped"}
    assert seen[0][0] == "n1" and peak[0] <= 2  # the canary alone first, then two at a time
    more = rollout(nodes, run, max_parallel=8, max_failures=1)
    assert [r["result"] for r in more].count("applied") == 7


def test_durations_and_changed_text():
    assert parse_duration("2m") == 120 and parse_duration("1m30s") == 90 and parse_duration("45") == 45
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert changed_text({"installed": ["a 1"], "upgraded": [], "removed": ["b 2"], "restarted": ["ext-a"]}) == \
        "installed a 1; removed b 2; restarted ext-a"


def test_files_are_kept_atomically_and_pruned(tmp_path):
    files = Files(tmp_path / "declared")
    assert files.current() is None and files.next_number() == 1
    for n in range(1, 9):
        files.add({"generation": n, "state": NodeState().as_dict(), "previous": n - 1 or None, "document": ""})
    assert files.current()["generation"] == 8
    files.set_current(2)  # rolled back far
    files.prune()
    assert files.numbers() == [1, 2, 4, 5, 6, 7, 8]  # the newest five, the current one and its previous
    assert not list((tmp_path / "declared").rglob(".*.tmp"))


def test_roles_of_the_declared_routes():
    from extvisor.remote import roles

    for path in ("/v1/declared", "/v1/declared/diff"):
        method = "GET" if path == "/v1/declared" else "POST"
        assert roles.allowed([roles.READER], method, path) and roles.allowed([roles.ADMIN], method, path)
    for path in ("/v1/declared/apply", "/v1/declared/rollback"):
        assert roles.required("POST", path) == roles.ADMIN_ONLY
        assert not roles.allowed([roles.OPERATOR, roles.READER], "POST", path)
