"""Hypothesis strategies for hostile specs, field by field, from the generated CRD schemas.

A case is one spec: a valid base for the kind with one field (any depth, list items and map values
included) replaced by a value that is either valid-ish for the field's schema (from its pattern, enum
and bounds) or hostile (huge numbers, long strings, odd unicode, lone surrogates, wrong types).
Shared by the model fuzz (tests/unit/api/test_fuzz_models.py) and the one against the real API
server and a running Rotor (tests/integration/api/test_fuzz.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from rotor.api.crd import crd
from rotor.api.kinds import Kind

Path = tuple[str | int, ...]
MAP_KEY = "fuzz"  # the key a map's value is fuzzed under


@dataclass(frozen=True)
class Case:
    path: Path
    value: Any
    spec: dict[str, Any]

    @property
    def field(self) -> str:
        """The path as the API server writes it: spec.data[0].key."""
        out = "spec"
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out

    @property
    def leaf(self) -> str:
        """The last named part of the path (what any message about the field mentions)."""
        return next(str(p) for p in reversed(self.path) if isinstance(p, str) and p != MAP_KEY)


def spec_schema(kind: Kind) -> dict[str, Any]:
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def field_paths(node: Mapping[str, Any], prefix: Path = ()) -> list[tuple[Path, Mapping[str, Any]]]:
    """Every field of a schema, depth first: objects' properties, a list's first item, a map's value."""
    found: list[tuple[Path, Mapping[str, Any]]] = [(prefix, node)] if prefix else []
    for name, prop in (node.get("properties") or {}).items():
        found += field_paths(prop, (*prefix, name))
    if isinstance(node.get("items"), Mapping):
        found += field_paths(node["items"], (*prefix, 0))
    if isinstance(node.get("additionalProperties"), Mapping):
        found += field_paths(node["additionalProperties"], (*prefix, MAP_KEY))
    return found


def _strings(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    limit = int(node.get("maxLength", 64))
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: len(s) <= limit)
    return st.text(min_size=int(node.get("minLength", 0)), max_size=min(limit, 80))


def valid_ish(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the field's type within (or at the edges of) its schema's bounds."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "string":
        return _strings(node)
    if kind == "integer":
        low, high = node.get("minimum", -(2**31)), node.get("maximum", 2**31)
        return st.integers(int(low), int(high)) | st.sampled_from([int(low), int(high)])
    if kind == "number":
        return st.floats(node.get("minimum", -1e6), node.get("maximum", 1e6), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(valid_ish(node.get("items") or {}), max_size=min(int(node.get("maxItems", 3)), 3))
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        keys = st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True)
        return st.dictionaries(keys, valid_ish(node["additionalProperties"]), max_size=3)
    if kind == "object":
        return st.just({})
    return st.none()


# Values that have broken parsers before, or might: overflows, never-firing crons, path tricks, markup.
_NASTY_STRINGS = [
    "", " ", "0", "-1", "abc", "0s", "0.0001h", "500ms", "1000000000d", "100000000d", "99999d", "3661d",
    "0 0 30 2 *", "0 0 31 4 *", "*/0 * * * *", "60 * * * *", "@daily", "..", "../x", "a/../b", ".", "a//b",
    "\x00", "a\x00b", "\u202eevil", "\u200b", "\ufeff", "\ud800", "a\udfffb", "😀" * 3, "ä", "null", "true",
    "{{ 7*7 }}", "{% for x in range(10**9) %}{% endfor %}", "${HOME}", "%00", "a b", "A" * 64,
    "2026-02-30T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1e308",
]


def _long_strings(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    over = int(node.get("maxLength", 256)) + 1
    return st.builds(lambda char, n: char * n, st.sampled_from(["a", "é", "😀", "\u202e", "\ud800", "0"]),
                     st.sampled_from([over, 5000, 70000]))


def hostile(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    return st.one_of(
        st.sampled_from([2**63, -(2**63) - 1, 10**30, -1, 0, 2**31, 2**53 + 1, 1.5, 1e308, -1e-308]),
        st.sampled_from(_NASTY_STRINGS),
        _long_strings(node),
        st.text(alphabet=st.characters(exclude_categories=()), max_size=40),  # surrogates and all
        json_scalars,
        st.lists(json_scalars | st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=8), json_scalars | st.text(max_size=5), max_size=3),
    )


def set_path(spec: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """SPEC with the field at PATH set to VALUE (creating parents as objects, a list's item 0)."""
    out = copy.deepcopy(spec)
    node: Any = out
    for part, following in zip(path, (*path[1:], None), strict=True):
        child: Any = [] if isinstance(following, int) else {}
        if following is None:
            child = value
        if isinstance(part, int):
            if not node:
                node.append(child)
            elif following is None:
                node[part] = value
            node = node[part]
        else:
            if following is None or not isinstance(node.get(part), (dict, list)):
                node[part] = child
            node = node[part]
    return out


def cases(kind: Kind, base_for: Callable[[Path], dict[str, Any]]) -> st.SearchStrategy[Case]:
    """One field of KIND's spec, set to a valid-ish or hostile value in the base BASE_FOR(path) gives."""
    paths = field_paths(spec_schema(kind))

    @st.composite
    def case(draw: st.DrawFn) -> Case:
        path, node = draw(st.sampled_from(paths))
        value = draw(st.one_of(valid_ish(node), valid_ish(node), hostile(node)))  # two in three valid-ish
        return Case(path, value, set_path(base_for(path), path, value))

    return case()

