"""The CRDs in crds/ are exactly what the pydantic models generate, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from rotor.api.common import parse_duration
from rotor.api.crd import render_all
from rotor.api.secretsource import SecretSourceSpec

CRDS = Path(__file__).resolve().parents[3] / "crds"


def test_crds_match_the_models() -> None:
    rendered = render_all()
    on_disk = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert set(on_disk) == set(rendered), "crds/ has extra or missing files: run `make crds`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"crds/{name} drifted from the models: run `make crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
                found.append((path, key))
            if key == "additionalProperties" and value is False:
                found.append((path, key))
            if (key in ("minimum", "maximum") and not isinstance(value, (int, float))) or (
                    key in ("minimum", "maximum") and isinstance(value, bool)):
                found.append((path, key))  # OpenAPI v3.0 bounds are numbers; exclusive* are the booleans
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found.extend(_walk(item, f"{path}[{i}]"))
    return found


@pytest.mark.parametrize("name", sorted(render_all()))
def test_schemas_are_structural(name: str) -> None:
    crd = yaml.safe_load(render_all()[name])
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:2] == ["Ready", "Reason"] and columns[-1] == "Age" and len(columns) == 4
    assert crd["spec"]["names"]["shortNames"]


def test_every_property_has_a_type() -> None:
    def check(node: Any, path: str) -> None:
        if isinstance(node, dict) and "properties" in node:
            for key, prop in node["properties"].items():
                assert "type" in prop or prop.get("x-kubernetes-preserve-unknown-fields"), f"{path}.{key} untyped"
                check(prop, f"{path}.{key}")
                check(prop.get("items"), f"{path}.{key}[]")

    for text in render_all().values():
        crd = yaml.safe_load(text)
        check(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], crd["spec"]["names"]["kind"])


def test_secretsource_schema_carries_defaults_patterns_and_cel() -> None:
    crd = yaml.safe_load(render_all()["rotor.dev_secretsources.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["provider"]
    assert spec["properties"]["refresh"]["properties"]["interval"]["default"] == "1h"
    assert "pattern" in spec["properties"]["refresh"]["properties"]["interval"]
    assert spec["properties"]["target"]["properties"]["creationPolicy"]["enum"] == ["Owner", "Merge", "Orphan"]
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert "self.provider != 'vault' || has(self.vault)" in rules


def test_durations_parse_and_bad_ones_name_the_fix() -> None:
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("7d").total_seconds() == 7 * 86400
    with pytest.raises(ValueError, match=r"e\.g\. 90s"):
        parse_duration("an hour")


def test_models_reject_what_the_crd_rejects() -> None:
    with pytest.raises(ValidationError, match=r"refresh\.interval"):
        SecretSourceSpec.model_validate({"provider": "kubernetes", "kubernetes": {"namespace": "a", "name": "b"},
                                         "refresh": {"interval": "soon"}})
    with pytest.raises(ValidationError, match="extra"):
        SecretSourceSpec.model_validate({"provider": "kubernetes", "bogus": 1})
