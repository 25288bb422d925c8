"""The two documents extvisor reads, as pydantic models.

`ServiceSpec` is the Talos v1.12 extension-service format; `ExtensionServiceConfig` the
machine-config document that adds files and environment to a service. The same models
are the daemon's API schema.

Talos decodes service files non-strictly: unknown keys are kept here (``extra="allow"``)
only so the loader can warn about them, then dropped. ExtensionServiceConfig is strict.
"""

from __future__ import annotations

import enum
import posixpath
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_serializer, model_validator,
)  # fmt: skip

from extvisor.documents.health import HealthCheck

NAME_RE = re.compile(r"^[-_a-z0-9]+$")
# A name is a hostname label in Talos (the container's hostname, a cgroup, a file name): at most 63.
NAME_MAX = 63


# Kubernetes's rule for an environment variable's name: letters, digits, '_', '-', '.', no digit first.
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _env_entry(entry: str) -> str:
    # The entry is never quoted back: a value, or a whole entry missing its '=', may be a secret,
    # and the message reaches events, logs and terminals.
    name, eq, value = entry.partition("=")
    if not eq:
        raise ValueError("not NAME=value: no '=' (the entry is not shown: it may hold a secret)")
    if not name:
        raise ValueError("not NAME=value: no name before '='")
    if not ENV_NAME_RE.fullmatch(name):
        raise ValueError("the name before '=' is not a variable name (letters, digits, '_', '-' and '.', "
                         "not starting with a digit)")  # fmt: skip
    if "\0" in value:
        raise ValueError("the value holds a NUL byte, which no process environment can")
    return entry


#: One ``NAME=value`` entry of ``environment``, checked without quoting it in any message.
EnvEntry = Annotated[
    str, AfterValidator(_env_entry), WithJsonSchema({"type": "string", "pattern": r"^[-._a-zA-Z][-._a-zA-Z0-9]*="})
]


class Restart(str, enum.Enum):
    always = "always"
    never = "never"
    untilSuccess = "untilSuccess"

    @classmethod
    def _missing_(cls, value: object) -> Restart | None:
        # Talos's enumer accepts any case.
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


class _Lenient(BaseModel):
    """Talos ignores unknown keys; we keep them for a warning, then drop them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class IDMapping(_Lenient):
    containerID: int
    hostID: int
    size: int


class Mount(_Lenient):
    """An OCI runtime-spec mount. Keys are the lower-cased Go field names, as Talos reads them."""

    destination: str = ""
    type: str = ""
    source: str = ""
    options: list[str] | None = None
    uidmappings: list[IDMapping] | None = None
    gidmappings: list[IDMapping] | None = None


class Security(_Lenient):
    # None keeps the runtime's defaults; [] clears them. The difference matters.
    maskedPaths: list[str] | None = None
    readonlyPaths: list[str] | None = None
    writeableRootfs: bool = False
    writeableSysfs: bool = False
    rootfsPropagation: str = ""


class Container(_Lenient):
    entrypoint: str = ""
    args: list[str] | None = None
    environment: list[EnvEntry] | None = None
    environmentFile: str = Field("", json_schema_extra={"deprecated": True})
    mounts: list[Mount] | None = None
    security: Security = Field(default_factory=Security)


class Dependency(BaseModel):
    """One ``depends`` entry: exactly one kind (``service``, ``path``, ... or a plugin's key).

    Kinds are registered by condition plugins, so the model holds the key and its value;
    the loader validates the value against the kind's own type.
    """

    kind: str
    value: Any

    @model_validator(mode="before")
    @classmethod
    def _from_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) != {"kind", "value"}:
            if len(data) != 1:
                raise ValueError("a dependency sets exactly one kind")
            ((kind, value),) = data.items()
            return {"kind": kind, "value": value}
        return data

    @model_serializer
    def _to_mapping(self) -> dict[str, Any]:
        return {self.kind: self.value}


class ServiceSpec(_Lenient):
    """An extension service, as in ``/usr/local/etc/containers/<name>.yaml``."""

    name: str = ""
    container: Container = Field(default_factory=Container)
    depends: list[Dependency] | None = None
    restart: Restart | None = None
    logToConsole: bool = False
    #: extvisor's own key (Talos skips it): how to tell that the running service is healthy
    healthcheck: HealthCheck | None = None

    @field_validator("name")
    @classmethod
    def _label_length(cls, value: str) -> str:
        if len(value) > NAME_MAX:
            raise ValueError(f"name is too long ({len(value)} characters; at most {NAME_MAX}, a hostname label)")
        return value

    @property
    def id(self) -> str:
        return f"ext-{self.name}"

    def service_dependencies(self) -> list[str]:
        return [d.value for d in self.depends or () if d.kind == "service"]

    @property
    def health(self) -> HealthCheck | None:
        """The health check, unless there is none or it is disabled (``test: [NONE]``)."""
        check = self.healthcheck
        return check if check is not None and check.enabled else None


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str
    mountPath: str

    @field_validator("content", "mountPath")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("mountPath")
    @classmethod
    def _absolute_and_clean(cls, value: str) -> str:
        if not posixpath.isabs(value):
            raise ValueError(f"mount path {value!r} is not absolute")
        if ".." in value.split("/"):
            raise ValueError(f"mount path {value!r} contains '..'")
        if posixpath.normpath(value) in ("/", "//"):
            raise ValueError(f"mount path {value!r} would cover the container's whole root filesystem")
        return value


def must_be(name: str, expected: str, value: str) -> str:
    """A document's ``apiVersion`` or ``kind`` field validator: *value* must be *expected*."""
    if value != expected:
        raise ValueError(f"{name} must be {expected}, not {value!r}")
    return value


class ExtensionServiceConfig(BaseModel):
    """``kind: ExtensionServiceConfig``: files and environment for the service ``name``."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: str
    kind: str
    name: str
    configFiles: list[ConfigFile] | None = None
    environment: list[EnvEntry] | None = None

    _v1alpha1 = field_validator("apiVersion")(classmethod(lambda cls, v: must_be("apiVersion", "v1alpha1", v)))
    _kind = field_validator("kind")(classmethod(lambda cls, v: must_be("kind", "ExtensionServiceConfig", v)))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("name is required")
        # It names a service, and a directory under the state dir: no "../", no "/".
        if not NAME_RE.fullmatch(value) or len(value) > NAME_MAX:
            raise ValueError(f"name {value!r} is not a service name (a-z 0-9 - _, at most {NAME_MAX} characters)")
        return value

    @model_validator(mode="after")
    def _something(self) -> ExtensionServiceConfig:
        if not self.configFiles and not self.environment:
            raise ValueError(f"no config files or environment for extension {self.name!r}")
        return self
