"""The shape of a JSON value, and a cheap check that an answer has it.

pydantic (the server's models) costs more to import than a whole CLI call, so the client
checks answers against these plain declarations instead; ``tests/server/test_routes.py``
keeps them equal to the server's models. A shape is:

- ``str``, ``bool``, ``int``, ``float`` (any finite number), ``object`` (anything),
  ``dict`` (any object), ``list`` (any array);
- ``[shape]``: an array of that shape;
- ``{"key": shape, ...}``: an object with at least these keys (a newer daemon may add some);
  a key written ``"key?"`` may be missing (an older daemon's answer), and has the shape when not;
- :class:`Maybe` (``null`` too), :class:`Map` (an object of any keys), :class:`OneOf`.

The error names where the value went wrong and what was wrong, never the value itself: it
comes from another machine and goes to a terminal.
"""

from __future__ import annotations

import math
from typing import Any


class ShapeError(ValueError):
    """An answer that is not the declared shape: ``answer[0].events: expected an array, got an object``."""


class Maybe:
    """The shape, or ``null``."""

    def __init__(self, shape: Any):
        self.shape = shape

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Maybe) and other.shape == self.shape

    def __repr__(self) -> str:
        return f"Maybe({self.shape!r})"


class Map:
    """An object with any keys, each value of the shape."""

    def __init__(self, shape: Any):
        self.shape = shape

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Map) and other.shape == self.shape

    def __repr__(self) -> str:
        return f"Map({self.shape!r})"


class OneOf:
    """One of several object shapes, told apart by a key only one of them has."""

    def __init__(self, *shapes: dict[str, Any]):
        self.shapes = shapes

    def __repr__(self) -> str:
        return f"OneOf{self.shapes!r}"


def kind(value: Any) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number" if isinstance(value, int) or math.isfinite(value) else "a number out of range"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fail(where: str, wanted: str, value: Any) -> ShapeError:
    return ShapeError(f"{where}: expected {wanted}, got {kind(value)}")


def check(shape: Any, value: Any, where: str = "answer") -> None:
    """Raise :class:`ShapeError` unless *value* (parsed JSON) has *shape*."""
    if shape is object:
        return
    if shape is str or shape is bool:
        if type(value) is not shape:
            raise _fail(where, "a string" if shape is str else "a boolean", value)
    elif shape is int:
        if type(value) is not int:
            raise _fail(where, "an integer", value)
    elif shape is float:
        if type(value) is bool or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(where, "a number", value)
    elif shape is dict or shape is list:
        if not isinstance(value, shape):
            raise _fail(where, "an object" if shape is dict else "an array", value)
    elif isinstance(shape, list):
        if not isinstance(value, list):
            raise _fail(where, "an array", value)
        for i, item in enumerate(value):
            check(shape[0], item, f"{where}[{i}]")
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        for key, inner in shape.items():
            if key.endswith("?"):
                key = key[:-1]
                if key not in value:
                    continue
            elif key not in value:
                raise ShapeError(f"{where}: no {key!r}")
            check(inner, value[key], f"{where}.{key}")
    elif isinstance(shape, Maybe):
        if value is not None:
            check(shape.shape, value, where)
    elif isinstance(shape, Map):
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        for key, item in value.items():
            check(shape.shape, item, f"{where}[{_key(key)}]")
    elif isinstance(shape, OneOf):
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        for option in shape.shapes:
            tag = next(iter(option))
            if tag in value:
                return check(option, value, where)
        tags = " or ".join(repr(next(iter(o))) for o in shape.shapes)
        raise ShapeError(f"{where}: none of {tags}")
    else:
        raise TypeError(f"not a shape: {shape!r}")


def _key(key: str) -> str:
    """A key in an error message: quoted, and only when it is short and printable."""
    return repr(key) if len(key) <= 40 and key.isprintable() else "…"
