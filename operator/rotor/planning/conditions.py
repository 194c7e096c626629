"""Kubernetes-convention conditions, computed without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def set_condition(
    conditions: Sequence[dict[str, Any]], *, type: str, status: str, reason: str, message: str,
    now: str, generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions with TYPE set; lastTransitionTime moves only when the status flips."""
    out: list[dict[str, Any]] = []
    previous = next((c for c in conditions if c.get("type") == type), None)
    transition = now if previous is None or previous.get("status") != status else previous.get(
        "lastTransitionTime", now)
    for condition in conditions:
        if condition.get("type") != type:
            out.append(dict(condition))
    out.append({"type": type, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": transition, "observedGeneration": generation})
    return sorted(out, key=lambda c: str(c["type"]))


def get_condition(conditions: Sequence[dict[str, Any]] | None, type: str) -> dict[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type), None)


def same_conditions(a: Sequence[dict[str, Any]] | None, b: Sequence[dict[str, Any]] | None) -> bool:
    """Equal apart from ordering (used to skip status writes that would change nothing)."""
    def key(c: dict[str, Any]) -> tuple[Any, ...]:
        return (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
    return sorted(map(key, a or ()), key=str) == sorted(map(key, b or ()), key=str)


def status_unchanged(current: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether merging PATCH into CURRENT would change nothing a reader cares about (condition
    timestamps aside): then no status write is needed."""
    if "conditions" in patch and not same_conditions(current.get("conditions"), patch["conditions"]):
        return False
    return all(current.get(k) == v for k, v in patch.items() if k != "conditions")
