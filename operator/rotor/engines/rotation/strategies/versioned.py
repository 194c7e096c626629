"""Versioned: a generated value as the next version, keeping the newest N versions (spec.versioned.keep)
so readers pinned to an earlier version keep working until it ages out."""

from __future__ import annotations

from rotor.engines.rotation.strategies.generated import GeneratedOverlap


class Versioned(GeneratedOverlap):
    @property
    def keep(self) -> int:
        return self.spec.versioned.keep
