"""The RotationPolicies Rotor holds in memory, folded from watch events (the handlers feed it).

It is also how other engines see policies (rotor.engines.ports.Policies): read-only, by name or by
namespace.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rotor.api.keys import ROTATE_NOW
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.planning import times

Key = tuple[str, str]  # (namespace, name)


@dataclass
class PolicyState:
    """One RotationPolicy as last seen (a rotor.engines.ports.PolicyView)."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime.datetime
    spec: RotationPolicySpec | None
    spec_error: str | None  # why the spec does not parse, naming the field
    status: dict[str, Any] = field(default_factory=dict)
    rotate_now: str | None = None  # the rotor.dev/rotate-now annotation


class RotationView:
    def __init__(self, clock: Callable[[], datetime.datetime] = times.now) -> None:
        self.policies: dict[Key, PolicyState] = {}
        self._clock = clock

    def upsert(self, body: Mapping[str, Any]) -> Key:
        """A created or changed policy (its spec parsed now); its key."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        try:
            spec, error = RotationPolicySpec.model_validate(dict(body.get("spec") or {})), None
        except ValidationError as exc:
            spec, error = None, "; ".join(f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                          for e in exc.errors(include_input=False))
        self.policies[key] = PolicyState(
            meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0),
            times.parse_optional(meta.get("creationTimestamp")) or self._clock(), spec, error,
            dict(body.get("status") or {}), (meta.get("annotations") or {}).get(ROTATE_NOW))
        return key

    def observe(self, body: Mapping[str, Any]) -> bool:
        """A watch event: keep status and the rotate-now annotation current; True if a manual
        rotation was just requested."""
        meta = body["metadata"]
        state = self.policies.get((meta["namespace"], meta["name"]))
        if state is None or state.uid != meta.get("uid"):
            return False
        state.status = dict(body.get("status") or {})
        requested = (meta.get("annotations") or {}).get(ROTATE_NOW)
        new = requested is not None and requested != state.rotate_now
        state.rotate_now = requested
        return new and requested != state.status.get("handledRotateNow")

    def forget(self, key: Key) -> None:
        self.policies.pop(key, None)

    def get(self, key: Hashable) -> PolicyState | None:
        return self.policies.get(key) if isinstance(key, tuple) else None

    # -- rotor.engines.ports.Policies ---------------------------------------------------------------

    def policy(self, namespace: str, name: str) -> PolicyState | None:
        return self.policies.get((namespace, name))

    def policies_in(self, namespace: str) -> list[PolicyState]:
        return [state for (ns, _), state in self.policies.items() if ns == namespace]
