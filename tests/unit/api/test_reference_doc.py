"""docs/reference.md is generated from the models in rotor.api: every field, with what the API server checks."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, Field

from rotor.api.kinds import KINDS, ROTATION_POLICY
from rotor.api.rotationpolicy import RotationPolicySpec

REPO = Path(__file__).resolve().parents[3]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "hack" / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_reference", module)
    spec.loader.exec_module(module)
    return module


def doc_rows(text: str) -> dict[str, list[str]]:
    """(kind section, field path) -> the row's cells."""
    rows: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif line.startswith("| `"):
            cells = [c.strip() for c in line.replace("\\|", "\0").strip("|").split("|")]
            rows[f"{section} {cells[0].strip('`')}"] = [c.replace("\0", "|") for c in cells]
    return rows


def model_paths(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Every field path of MODEL, walked from the pydantic fields (not the schema the generator walks)."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        yield path
        pending: list[tuple[Any, str]] = [(info.annotation, path)]
        while pending:
            annotation, here = pending.pop()
            origin = typing.get_origin(annotation)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from model_paths(annotation, here)
            elif origin is list:
                pending.append((typing.get_args(annotation)[0], f"{here}[]"))
            elif origin is dict:
                pending.append((typing.get_args(annotation)[1], f"{here}.<key>"))
            elif isinstance(annotation, types.UnionType) or origin is typing.Union:
                pending.extend((arg, here) for arg in typing.get_args(annotation))


def test_docs_reference_md_matches_the_models() -> None:
    generated = load_generator().render()
    on_disk = (REPO / "docs" / "reference.md").read_text()
    assert on_disk == generated, "docs/reference.md is out of date: run `python hack/gen_reference.py`"


def test_every_field_of_every_kind_has_a_row() -> None:
    rows = doc_rows((REPO / "docs" / "reference.md").read_text())
    expected = {f"{kind.kind} {part}" for kind in KINDS for part in ("spec", "status")}
    for kind in KINDS:
        expected |= {f"{kind.kind} {path}" for path in model_paths(kind.spec, "spec")}
        expected |= {f"{kind.kind} {path}" for path in model_paths(kind.status, "status")}
    assert set(rows) == expected
    assert len(rows) > 150


def test_rows_carry_type_default_bounds_and_rules() -> None:
    rows = doc_rows((REPO / "docs" / "reference.md").read_text())
    # cells: path, type, default, validation, description
    assert rows["RotationPolicy spec.generator.length"][1:4] == ["integer", "`32`", ">= 8; <= 1024"]
    # A default only the model applies (a default factory) is still the documented default.
    assert rows["RotationPolicy spec.generator.classes"][2] == '`["lower", "upper", "digits"]`'
    assert rows["RotationPolicy spec.dynamic.renewFraction"][3] == "> 0; < 1"
    assert rows["RotationPolicy spec.schedule"][3] == "rule: set exactly one of schedule.interval and schedule.cron"
    assert rows["RotationPolicy spec.schedule.window.start"][3] == "pattern `^([01][0-9]|2[0-3]):[0-5][0-9]$`"
    assert rows["SecretSource spec.refresh.interval"][1:3] == ["duration", "`1h`"]
    assert rows["SecretSource spec.vault.role"][2] == "required"
    assert rows["SecretSource spec.vault.connection"][3] == "length 1-63; DNS label"
    assert rows["SecretSource spec.target.creationPolicy"][3] == "one of `Owner`, `Merge`, `Orphan`"
    assert rows["SecretSource spec.data"][1:4] == ["[]object", "-", "items <= 256"]
    assert rows["SecretSource status.consumers"][1] == "map[string]integer"
    assert rows["LeakIncident status.timeline"][3] == "items <= 200"
    assert rows["LeakIncident status.timestamps.detected"][1] == "string (date-time)"
    assert "rotor.dev/rotate-now" in rows["RotationPolicy status.handledRotateNow"][4]


def test_a_new_field_makes_the_doc_drift() -> None:
    class Probe(RotationPolicySpec):
        probe_window: str = Field(default="5m", max_length=8, description="Only for this test.")

    generator = load_generator()
    probed = dataclasses.replace(ROTATION_POLICY, spec=Probe)
    text = generator.render([probed])
    assert text != generator.render([ROTATION_POLICY])
    assert "| `spec.probeWindow` | string | `5m` | length <= 8 | Only for this test. |" in text
