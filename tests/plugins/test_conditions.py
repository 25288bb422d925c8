"""The built-in condition kinds: registration, validation, service, configuration, time."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from extvisor import ConditionContext, ExtensionServiceConfig, ServiceSpec, SpecWarning
from extvisor.plugins import get_plugin_manager
from pydantic import TypeAdapter, ValidationError

import extvisor_conditions
from extvisor_conditions import timesync

KEYS = ["configuration", "network", "path", "service", "time"]


class FakeServices:
    """A ServiceView: states by id, and a changed() that wakes on every set()."""

    def __init__(self, **states: str):
        self.states = dict(states)
        self.waiters: list[asyncio.Future] = []
        self.changed_calls = 0

    def state(self, service_id: str) -> str | None:
        return self.states.get(service_id)

    def is_up(self, service_id: str) -> bool:
        return self.states.get(service_id) == "Running"

    async def changed(self) -> None:
        self.changed_calls += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        await fut

    def set(self, service_id: str, state: str) -> None:
        self.states[service_id] = state
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class FakeConfigs:
    def __init__(self) -> None:
        self.docs: dict[str, ExtensionServiceConfig] = {}
        self.waiters: list[asyncio.Future] = []
        self.changed_calls = 0

    def get(self, name: str) -> ExtensionServiceConfig | None:
        return self.docs.get(name)

    async def changed(self) -> None:
        self.changed_calls += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        await fut

    def put(self, name: str, doc: ExtensionServiceConfig | None) -> None:
        if doc is None:
            self.docs.pop(name, None)
        else:
            self.docs[name] = doc
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            fut.set_result(None)


def make_ctx(services=None, configs=None, **options) -> ConditionContext:
    spec = ServiceSpec(name="web")
    return ConditionContext(spec.id, spec, services or FakeServices(), configs or FakeConfigs(), options)


def kinds():
    return {k.key: k for k in extvisor_conditions.extvisor_register_conditions()}


async def pending(task: asyncio.Task, delay: float = 0.1) -> bool:
    await asyncio.sleep(delay)
    return not task.done()


# -- registration -----------------------------------------------------------------------


def test_registered_through_the_plugin_manager():
    pm = get_plugin_manager()
    found = pm.condition_kinds()
    for key in KEYS:
        assert key in found, f"{key} not registered; problems: {pm.problems}"
        assert pm.provider_of("extvisor_register_conditions", "key", key) == "conditions"
    assert found["path"].aliases == ("file",)
    info = {i.name: i for i in pm.plugin_infos()}["conditions"]
    assert info.status == "active" and "extvisor_register_conditions" in info.hooks


def test_is_set_follows_talos():
    k = kinds()
    assert k["time"].is_set(True) and not k["time"].is_set(False)
    assert k["configuration"].is_set(True) and not k["configuration"].is_set(False)
    assert k["network"].is_set(["addresses"]) and not k["network"].is_set([])
    assert k["service"].is_set("ext-a") and k["path"].is_set("/x")


# -- validation -------------------------------------------------------------------------


def validate(key: str, value):
    return TypeAdapter(kinds()[key].value_type).validate_python(value)


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("service", "ext-a", "ext-a"),
        ("service", "cri", "cri"),
        ("path", "/run/x", "/run/x"),
        ("network", ["addresses"], ["addresses"]),
        ("network", ["Connectivity", "ADDRESSES", "addresses"], ["connectivity", "addresses"]),
        ("network", ["hostname", "etcfiles"], ["hostname", "etcfiles"]),
        ("time", True, True),
        ("time", False, False),
        ("configuration", True, True),
    ],
)
def test_valid_values(key, value, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate(key, value) == expected


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("service", "", "must not be empty"),
        ("service", 3, "valid string"),
        ("path", "run/x", 'path is not absolute: "run/x"'),
        ("path", "", "must not be empty"),
        ("network", ["addresses", "wifi"], '"wifi" does not belong to network status values'),
        ("network", "addresses", "valid list"),
        ("network", [1], "valid string"),
        ("time", "yes", "valid boolean"),
        ("configuration", "true", "valid boolean"),
    ],
)
def test_invalid_values(key, value, message):
    with pytest.raises(ValidationError) as err:
        validate(key, value)
    assert message in str(err.value)


def test_network_error_names_the_valid_statuses():
    with pytest.raises(ValidationError) as err:
        validate("network", ["wifi"])
    assert "addresses, connectivity, hostname, etcfiles" in str(err.value)


def test_network_address_alias_warns():
    with pytest.warns(SpecWarning, match="network status `address` is deprecated, use `addresses`"):
        assert validate("network", ["address", "connectivity"]) == ["addresses", "connectivity"]


# -- service ----------------------------------------------------------------------------


async def test_service_waits_for_registration_then_running():
    services = FakeServices()
    cond = kinds()["service"].factory("ext-a", make_ctx(services))
    assert cond.describe() == 'service "ext-a" to be "registered"'
    task = asyncio.create_task(cond.wait())
    assert await pending(task)
    services.set("ext-a", "Waiting")
    assert cond.describe() == 'service "ext-a" to be "up"'
    assert await pending(task, 0.05)
    services.set("ext-a", "Finished")  # Talos: Finished is not up
    assert await pending(task, 0.05)
    services.set("ext-a", "Running")
    await asyncio.wait_for(task, 1)
    # event-driven: one changed() per state change, plus the first subscription
    assert services.changed_calls == 3


async def test_service_already_up_returns_at_once():
    services = FakeServices(**{"ext-a": "Running"})
    cond = kinds()["service"].factory("ext-a", make_ctx(services))
    await asyncio.wait_for(cond.wait(), 0.5)
    assert services.changed_calls == 0


async def test_service_wait_cancels():
    services = FakeServices()
    task = asyncio.create_task(kinds()["service"].factory("cri", make_ctx(services)).wait())
    assert await pending(task, 0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kinds()["service"].factory("cri", make_ctx(services)).describe() == 'service "cri" to be "registered"'


# -- configuration ----------------------------------------------------------------------


def config_doc(name: str) -> ExtensionServiceConfig:
    return ExtensionServiceConfig(apiVersion="v1alpha1", kind="ExtensionServiceConfig", name=name, environment=["A=1"])


async def test_configuration_waits_for_its_document():
    configs = FakeConfigs()
    cond = kinds()["configuration"].factory(True, make_ctx(configs=configs))
    assert cond.describe() == "extension service config"
    task = asyncio.create_task(cond.wait())
    assert await pending(task)
    configs.put("other", config_doc("other"))  # another service's document: keep waiting
    assert await pending(task, 0.05)
    configs.put("web", config_doc("web"))  # the spec's name, without ext-
    await asyncio.wait_for(task, 1)
    assert configs.changed_calls == 2


async def test_configuration_present_returns_at_once():
    configs = FakeConfigs()
    configs.put("web", config_doc("web"))
    await asyncio.wait_for(kinds()["configuration"].factory(True, make_ctx(configs=configs)).wait(), 0.5)


# -- time -------------------------------------------------------------------------------


async def test_time_waits_for_injected_reader(monkeypatch):
    monkeypatch.setattr(timesync, "RECHECK", 0.05)
    answers = [(False, "kernel clock not synchronised")] * 3 + [(True, "kernel clock synchronised")]
    calls = []

    def reader():
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    cond = kinds()["time"].factory(True, make_ctx(time_reader=reader))
    assert cond.describe() == "time sync (kernel clock not synchronised)"
    await asyncio.wait_for(cond.wait(), 2)
    assert len(calls) == 4
    assert cond.describe() == "time sync"


async def test_time_assumed_synced_needs_no_read():
    def reader():
        raise AssertionError("must not be read")

    cond = kinds()["time"].factory(True, make_ctx(assume_time_synced=True, time_reader=reader))
    await asyncio.wait_for(cond.wait(), 0.5)
    assert cond.describe() == "time sync"


async def test_time_reader_error_fails_the_wait():
    def reader():
        raise OSError("adjtimex broke")

    with pytest.raises(OSError, match="adjtimex broke"):
        await kinds()["time"].factory(True, make_ctx(time_reader=reader)).wait()


def test_real_adjtimex_reads():
    assert timesync.Timex.status.offset == 40 and timesync.ctypes.sizeof(timesync.Timex) == 208
    synced, detail = timesync.kernel_time_synced()
    assert isinstance(synced, bool) and detail
    cond = kinds()["time"].factory(True, make_ctx())
    assert cond.describe().startswith("time sync")


# -- through the loader -----------------------------------------------------------------

SERVICE_YAML = """\
name: web
container:
  entrypoint: /bin/sh
depends:
  - service: ext-db
  - file: /run/x
  - network: [address, Hostname]
  - time: true
  - configuration: true
restart: always
"""


def test_loader_validates_every_kind():
    from extvisor.documents.loader import load_service_text

    loaded = load_service_text(SERVICE_YAML, "web.yaml", get_plugin_manager().condition_kinds())
    assert loaded.ok, [str(f) for f in loaded.findings]
    assert [(d.kind, d.value) for d in loaded.spec.depends] == [
        ("service", "ext-db"),
        ("path", "/run/x"),
        ("network", ["addresses", "hostname"]),
        ("time", True),
        ("configuration", True),
    ]
    assert sorted(str(f) for f in loaded.findings) == [
        "web.yaml:6:5: warning: depends.1.file: `file` is deprecated, use `path`",
        "web.yaml:7:14: warning: depends.2.network: network status `address` is deprecated, use `addresses`",
    ]


def test_loader_reports_bad_values_with_their_line():
    from extvisor.documents.loader import load_service_text

    text = SERVICE_YAML.replace("ext-db", '""').replace("/run/x", "run/x").replace("Hostname", "wifi")
    text = text.replace("time: true", "time: false")
    loaded = load_service_text(text, "web.yaml", get_plugin_manager().condition_kinds())
    errors = [str(f) for f in loaded.findings if f.severity == "error"]
    assert loaded.spec is None
    assert any(e.startswith("web.yaml:5:") and "must not be empty" in e for e in errors), errors
    assert any(e.startswith("web.yaml:6:") and 'path is not absolute: "run/x"' in e for e in errors), errors
    assert any(e.startswith("web.yaml:7:") and '"wifi" does not belong' in e for e in errors), errors
    assert any(e.startswith("web.yaml:8:") and "no dependency specified" in e for e in errors), errors


class HealthServices(FakeServices):
    """A ServiceView whose services may have a health check (``health(id)``)."""

    def __init__(self, **states: str):
        super().__init__(**states)
        self.healths: dict = {}

    def health(self, service_id: str):  # type: ignore[no-untyped-def]
        return self.healths.get(service_id)

    def is_up(self, service_id: str) -> bool:
        health = self.healths.get(service_id)
        return super().is_up(service_id) and (health is None or (not health.unknown and health.healthy))


async def test_service_condition_waits_for_health_and_says_so():
    from extvisor import Health

    services = HealthServices(**{"ext-db": "Running"})
    services.healths["ext-db"] = Health(unknown=True)
    cond = kinds()["service"].factory("ext-db", make_ctx(services))
    assert cond.describe() == 'service "ext-db" to be "healthy" (health unknown)'
    waiting = asyncio.ensure_future(cond.wait())
    await asyncio.sleep(0.01)
    services.healths["ext-db"] = Health(unknown=False, healthy=False, last_message="exit code 1")
    services.set("ext-db", "Running")
    await asyncio.sleep(0.01)
    assert not waiting.done() and cond.describe() == 'service "ext-db" to be "healthy" (health unhealthy)'
    services.healths["ext-db"] = Health(unknown=False, healthy=True)
    services.set("ext-db", "Running")
    await asyncio.wait_for(waiting, 1)
    services.healths.clear()  # no check: Talos's words
    services.set("ext-db", "Waiting")
    assert cond.describe() == 'service "ext-db" to be "up"'
