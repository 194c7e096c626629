"""Operator settings as users write them: the environment variables the README documents."""

from __future__ import annotations

import pytest

from rotor.config import Settings


def test_namespaces_from_the_environment_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTOR_NAMESPACES", "team-a, team-b,")
    assert Settings().namespaces == ["team-a", "team-b"]


def test_no_namespaces_means_every_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTOR_NAMESPACES", raising=False)
    assert Settings().namespaces == []
