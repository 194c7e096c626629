"""Rotation strategies: one class per strategy behind the Strategy protocol (base.py), picked from the
spec in one place (strategy_class)."""

from __future__ import annotations

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.engines.rotation.strategies.base import KvStrategy, Strategy
from rotor.engines.rotation.strategies.certificate import Certificates
from rotor.engines.rotation.strategies.dynamic import Dynamic
from rotor.engines.rotation.strategies.generated import GeneratedOverlap
from rotor.engines.rotation.strategies.static_roles import StaticRolePair
from rotor.engines.rotation.strategies.transit import Transit
from rotor.engines.rotation.strategies.versioned import Versioned


def strategy_class(spec: RotationPolicySpec) -> type[KvStrategy]:
    """The class carrying out SPEC's strategy."""
    if spec.strategy == "dynamic":
        return Dynamic
    if spec.strategy == "versioned":
        return Versioned
    if spec.strategy == "transit":
        return Transit
    if spec.strategy == "certificate":
        return Certificates
    return StaticRolePair if spec.overlap.static_roles else GeneratedOverlap


__all__ = ["Certificates", "Dynamic", "GeneratedOverlap", "KvStrategy", "StaticRolePair", "Strategy", "Transit",
           "Versioned", "strategy_class"]
