"""Every sample manifest is accepted by the real API server as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PLURALS = {"SecretSource": "secretsources", "RotationPolicy": "rotationpolicies", "LeakIncident": "leakincidents"}


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_sample_applies(path: Path, custom: Any, namespace: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] not in PLURALS:
            continue
        created = custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, PLURALS[doc["kind"]],
                                                         doc, field_validation="Strict")
        assert created["metadata"]["name"] == doc["metadata"]["name"]


def test_every_kind_has_a_sample() -> None:
    kinds = {doc["kind"] for p in SAMPLES.glob("*.yaml") for doc in yaml.safe_load_all(p.read_text())}
    assert set(PLURALS) <= kinds
