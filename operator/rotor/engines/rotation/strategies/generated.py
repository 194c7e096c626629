"""Overlap with a generated value: Rotor makes a new value and writes it as the next version; readers
move to it while the old version stays readable; afterwards only the newest version is kept."""

from __future__ import annotations

from collections.abc import Mapping

from rotor.engines.rotation.strategies.base import KvStrategy, Values
from rotor.planning.rotation import generate


class GeneratedOverlap(KvStrategy):
    async def publish_new(self, old: Mapping[str, str], data: Mapping[str, str], cas: str,
                          marks: Mapping[str, str], rotation_id: str) -> Values:
        await self.mark(cas, rotation_id)
        return {"version": await self.write(self.new_data(data), cas)}

    def new_data(self, data: Mapping[str, str]) -> Mapping[str, str]:
        return {**data, self.spec.generator.key: generate(self.spec.generator)}
