"""Generate docs/reference.md, every field of every Rotor kind, from the pydantic models in rotor.api.

    python hack/gen_reference.py           write docs/reference.md
    python hack/gen_reference.py --check   exit 1 if docs/reference.md is out of date

The rows walk the same structural schema the CRDs in crds/ are generated from (rotor.api.crd), so a
bound or rule in the reference is exactly what the API server enforces; defaults that only the models
apply (default factories) are read from the models. tests/unit/api/test_reference_doc.py fails when
the file drifts from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rotor.api.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN
from rotor.api.crd import structural_schema
from rotor.api.kinds import KINDS, Kind, printer_columns

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reference.md"
# Patterns common enough to name instead of printing the regular expression each time.
_NAMED_PATTERNS = {DNS_LABEL_PATTERN: "DNS label", DNS_SUBDOMAIN_PATTERN: "DNS subdomain name"}


@dataclass(frozen=True)
class Row:
    path: str  # JSON path from the object's root, arrays as [] (spec.data[].key)
    type: str
    required: bool
    default: str  # rendered, "" when none
    validation: tuple[str, ...]
    description: str


def rows(kind: Kind) -> Iterator[Row]:
    """Every field of KIND's spec and status, depth first in declaration order."""
    for part, model in (("spec", kind.spec), ("status", kind.status)):
        schema = structural_schema(model)
        description = "Desired state, written by you." if part == "spec" else (
            "Observed state, written by Rotor. Never holds a secret value: names, versions, digests, times.")
        yield Row(part, "object", part == "spec", "", _validation(schema), description)
        yield from _walk(schema, model, part)


def _walk(node: Mapping[str, Any], model: type[BaseModel] | None, path: str) -> Iterator[Row]:
    """The rows under an object schema NODE (whose pydantic model is MODEL, when it has one)."""
    required = set(node.get("required") or ())
    fields = _fields(model)
    for name, prop in (node.get("properties") or {}).items():
        field = fields.get(name)
        here = f"{path}.{name}"
        yield Row(here, _type(prop), name in required, _default(prop, field), _validation(prop),
                  _text(prop.get("description") or ""))
        inner = _nested_model(field)
        if prop.get("properties"):
            yield from _walk(prop, inner, here)
        items = prop.get("items") or {}
        if items.get("properties"):
            yield from _walk(items, inner, f"{here}[]")
        values = prop.get("additionalProperties")
        if isinstance(values, Mapping) and values.get("properties"):
            yield from _walk(values, inner, f"{here}.<key>")


def _fields(model: type[BaseModel] | None) -> dict[str, FieldInfo]:
    if model is None:
        return {}
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _nested_model(field: FieldInfo | None) -> type[BaseModel] | None:
    """The model inside a field's annotation: X, X | None, list[X], dict[str, X]."""
    pending: list[Any] = [field.annotation] if field else []
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
            pending.extend(typing.get_args(annotation))
    return None


def _type(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type", "any")
    if kind == "string" and prop.get("pattern") == DURATION_PATTERN:
        return "duration"
    if kind == "string" and prop.get("format"):
        return f"string ({prop['format']})"
    if kind == "array":
        return f"[]{_type(prop.get('items') or {})}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), Mapping):
        return f"map[string]{_type(prop['additionalProperties'])}"
    return str(kind)


def _default(prop: Mapping[str, Any], field: FieldInfo | None) -> str:
    """What an unset field means: the schema's default (applied by the API server), else the model's."""
    if "default" in prop:
        value = prop["default"]
    elif field is not None and not field.is_required():
        value = field.get_default(call_default_factory=True)
        if value is PydanticUndefined or value is None or value in ([], {}):
            return ""
        if isinstance(value, BaseModel):
            value = {}  # an object whose own fields take their defaults
    else:
        return ""
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def _validation(prop: Mapping[str, Any]) -> tuple[str, ...]:
    """The constraints the API server checks on this field, as phrases."""
    out: list[str] = []
    if "enum" in prop:
        out.append("one of " + ", ".join(f"`{v}`" for v in prop["enum"]))
    items = prop.get("items") or {}
    if "enum" in items:
        out.append("items one of " + ", ".join(f"`{v}`" for v in items["enum"]))
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None:
        out.append(f"{'>' if prop.get('exclusiveMinimum') else '>='} {low}")
    if high is not None:
        out.append(f"{'<' if prop.get('exclusiveMaximum') else '<='} {high}")
    out += _range("length", prop.get("minLength"), prop.get("maxLength"))
    out += _range("items", prop.get("minItems"), prop.get("maxItems"))
    pattern = prop.get("pattern")
    if pattern and pattern != DURATION_PATTERN:
        out.append(_NAMED_PATTERNS.get(pattern) or f"pattern `{pattern}`")
    out += [f"rule: {_text(rule['message'])}" for rule in prop.get("x-kubernetes-validations") or ()]
    return tuple(out)


def _range(what: str, low: int | None, high: int | None) -> list[str]:
    if low is not None and high is not None:
        return [f"{what} {low}-{high}"]
    if high is not None:
        return [f"{what} <= {high}"]
    if low is not None:
        return [f"{what} >= {low}"]
    return []


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Pipes escaped, also inside code spans (patterns): GFM splits table cells on them first."""
    return text.replace("|", "\\|")


def render(kinds: Iterable[Kind] = KINDS) -> str:
    kinds = tuple(kinds)
    lines = [
        "# API reference",
        "",
        "<!-- Generated by hack/gen_reference.py from the models in operator/rotor/api. Do not edit; run",
        "     `python hack/gen_reference.py` (a unit test fails when this file drifts). -->",
        "",
        "Every field of every Rotor kind, from the same models the CRDs in `crds/` are generated from",
        "(`kubectl explain` shows the same descriptions). A field is written as its JSON path: `[]` is an",
        "item of a list, `<key>` a value of a map. **Validation** is what the API server checks at",
        "`kubectl apply` time (bounds, lengths, patterns, enums and CEL rules), so a malformed object is",
        "refused with a message naming the field. A **duration** is a number and unit, repeated: `90s`,",
        "`15m`, `1h30m`, `7d` (units `ms`, `s`, `m`, `h`, `d`). **Default** is what an unset field means;",
        "status fields are written by Rotor only.",
        "",
        "| Kind | Short names | What it is |",
        "|---|---|---|",
    ]
    for kind in kinds:
        short = ", ".join(f"`{name}`" for name in kind.short_names)
        lines.append(f"| [{kind.kind}](#{kind.kind.lower()}) | {short} | {_cell(_text(kind.description))} |")
    for kind in kinds:
        lines += _section(kind)
    return "\n".join(lines) + "\n"


def _section(kind: Kind) -> list[str]:
    columns = ", ".join(column.name for column in printer_columns(kind))
    lines = [
        "",
        f"## {kind.kind}",
        "",
        f"`apiVersion: {kind.api_version}`, `kind: {kind.kind}`, namespaced. {_text(kind.description)}",
        f"`kubectl get {kind.short_names[0]}` shows {columns}.",
        "",
        "| Field | Type | Default | Validation | Description |",
        "|---|---|---|---|---|",
    ]
    for row in rows(kind):
        default = "required" if row.required else (row.default or "-")
        validation = "; ".join(row.validation) or "-"
        cells = (f"`{row.path}`", row.type, default, validation, row.description or "-")
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/reference.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.relative_to(REPO)} is out of date: run python hack/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
