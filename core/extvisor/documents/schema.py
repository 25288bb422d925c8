"""JSON Schema of the documents, for editors (``extvisor schema``).

The service schema's ``depends`` items come from the registered condition kinds, so a
third party's key (``tcp: host:port``) appears once its plugin is installed. Unknown keys
are only a warning for extvisor, but the schema forbids them: an editor should point at
a mis-indented key, which is what the warning is for.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from extvisor.documents.models import ExtensionServiceConfig, ServiceSpec
from extvisor.records import ConditionKind

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _close_objects(schema: Any) -> None:
    """``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            _close_objects(item)


def _dependency_schema(kinds: Mapping[str, ConditionKind], defs: dict[str, Any]) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    for key in sorted(kinds):
        kind = kinds[key]
        prefix = f"depends_{key}_"
        try:
            value = TypeAdapter(kind.value_type).json_schema(ref_template=f"#/$defs/{prefix}{{model}}")
        except Exception:  # a type pydantic cannot describe: accept anything there
            value = {}
        for name, sub in value.pop("$defs", {}).items():
            defs[prefix + name] = sub
        if kind.description:
            value.setdefault("description", kind.description)
        for name in (key, *kind.aliases):
            entry = copy.deepcopy(value)
            if name != key:
                entry["deprecated"] = True
                entry["description"] = f"deprecated spelling of `{key}`"
            choices.append(
                {"type": "object", "properties": {name: entry}, "required": [name], "additionalProperties": False}
            )
    return {"oneOf": choices} if choices else {"not": {}}


def service_schema(kinds: Mapping[str, ConditionKind]) -> dict[str, Any]:
    schema = ServiceSpec.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    defs.pop("Dependency", None)
    _close_objects(schema)
    schema["properties"]["depends"] = {
        "anyOf": [{"type": "array", "items": _dependency_schema(kinds, defs)}, {"type": "null"}],
        "description": "what the service waits for; each entry sets exactly one kind",
    }
    restart = schema["properties"].get("restart", {})
    restart["description"] = "always, never or untilSuccess (any case); required"
    schema["title"] = "Talos extension service (extvisor)"
    return {"$schema": DIALECT, **schema}


def config_schema() -> dict[str, Any]:
    schema = ExtensionServiceConfig.model_json_schema(ref_template="#/$defs/{model}")
    schema["properties"]["apiVersion"] = {"const": "v1alpha1"}
    schema["properties"]["kind"] = {"const": "ExtensionServiceConfig"}
    schema["anyOf"] = [{"required": ["configFiles"]}, {"required": ["environment"]}]
    schema["title"] = "ExtensionServiceConfig (extvisor)"
    return {"$schema": DIALECT, **schema}


def image_verification_schema() -> dict[str, Any]:
    """Talos v1.13's ImageVerificationConfig as extvisor reads it (documents/imageverify.py):
    each rule an ``image`` glob and exactly one of publicKey, skip, deny; no keyless."""
    glob = {"type": "string", "minLength": 1, "pattern": "^[^@]*$",
            "description": "glob on the normalized registry/repository (never tag or digest); * matches / too"}  # fmt: skip
    choice = [
        {"required": ["publicKey"], "properties": {"publicKey": {
            "type": "object", "required": ["certificate"], "additionalProperties": False,
            "properties": {"certificate": {"type": "string", "description": "a PEM public key (cosign.pub) or certificate"}},
        }}},
        {"required": ["skip"], "properties": {"skip": {"const": True, "description": "allow unverified"}}},
        {"required": ["deny"], "properties": {"deny": {"const": True, "description": "refuse"}}},
    ]  # fmt: skip
    rule = {"type": "object", "required": ["image"], "additionalProperties": False,
            "properties": {"image": glob, "publicKey": {}, "skip": {}, "deny": {}}, "oneOf": choice}  # fmt: skip
    return {
        "$schema": DIALECT, "title": "ImageVerificationConfig (extvisor)", "type": "object",
        "required": ["apiVersion", "kind", "rules"], "additionalProperties": False,
        "properties": {"apiVersion": {"const": "v1alpha1"}, "kind": {"const": "ImageVerificationConfig"},
                       "rules": {"type": "array", "items": rule, "description": "in order; the first match decides"}},
    }  # fmt: skip


def combined_schema(kinds: Mapping[str, ConditionKind]) -> dict[str, Any]:
    """Any document: one schema an editor can use for every extvisor YAML file."""
    defs: dict[str, Any] = {}
    parts = (("ServiceSpec", service_schema(kinds)), ("ExtensionServiceConfig", config_schema()),
             ("ImageVerificationConfig", image_verification_schema()))  # fmt: skip
    for name, schema in parts:
        schema = dict(schema)
        schema.pop("$schema")
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    return {
        "$schema": DIALECT,
        "title": "extvisor documents",
        "oneOf": [{"$ref": f"#/$defs/{name}"} for name, _ in parts],
        "$defs": defs,
    }


def schema_for(kind: str, kinds: Mapping[str, ConditionKind]) -> dict[str, Any]:
    if kind == "service":
        return service_schema(kinds)
    if kind == "config":
        return config_schema()
    if kind == "image-verification":
        return image_verification_schema()
    return combined_schema(kinds)
