"""Talos's wording helpers."""

from __future__ import annotations

import json


def goquote(value: str) -> str:
    """Quote like Go's ``%q`` does for ordinary strings: ``"ext-a"``."""
    return json.dumps(value, ensure_ascii=False)
