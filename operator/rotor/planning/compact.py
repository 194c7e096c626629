"""Compact copies of what the views keep per object: with 10,000 SecretSources, the same short strings
(condition types and reasons, label and annotation keys, owner-reference fields, the second a status was
written) would otherwise be held once per object, as each watch event's JSON brings its own copies."""

from __future__ import annotations

import sys
from typing import Any

SHORT = 40  # longer strings (messages, digests) are rarely shared: interning them only costs a lookup


def compact(value: Any) -> Any:
    """VALUE (JSON-shaped: dicts, lists, tuples, strings, numbers) rebuilt with its keys and short strings
    interned; equal to VALUE, and never the same dict or list (a caller may keep and change it)."""
    if type(value) is str:
        return sys.intern(value) if len(value) <= SHORT else value
    if isinstance(value, dict):
        return {(sys.intern(k) if type(k) is str else k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(compact(v) for v in value)
    return value
