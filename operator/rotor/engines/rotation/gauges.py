"""The rotation engine's metrics: phases entered and left, outcomes, and per-policy gauges recomputed
at every step (overdue rotations, held and expiring leases; bounded labels only)."""

from __future__ import annotations

import datetime
from collections.abc import Hashable, Mapping

from rotor.api.common import parse_duration
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.observability.metrics import (
    LEASES,
    LEASES_EXPIRING,
    ROLLBACKS,
    ROTATION_OVERDUE,
    ROTATION_PHASE_SECONDS,
    ROTATIONS,
    ROTATIONS_IN_PROGRESS,
)
from rotor.planning import times
from rotor.planning.rotation import IDLE, Transition

OVERDUE_GRACE = datetime.timedelta(minutes=5)
EXPIRING_AT_LEAST = datetime.timedelta(minutes=10)


class RotationGauges:
    def __init__(self) -> None:
        self._phase_started: dict[Hashable, float] = {}
        self._overdue: dict[Hashable, bool] = {}
        self._expiring: dict[Hashable, bool] = {}
        self._leases: dict[Hashable, tuple[str, bool]] = {}

    def seen(self, key: Hashable, spec: RotationPolicySpec, phase: str | None, due_at: datetime.datetime,
             now: datetime.datetime, active: Mapping[str, str], *, holds_leases: bool,
             backend_now: datetime.datetime | None = None) -> None:
        """One policy's share of rotor_rotations_overdue, rotor_leases and rotor_leases_expiring_soon (lease
        times are the backend's: BACKEND_NOW is its clock now)."""
        self._overdue[key] = phase in IDLE and now > due_at + OVERDUE_GRACE
        max_expires = times.parse_optional(active.get("leaseMaxExpires"))
        holds = holds_leases and bool(active.get("lease"))
        self._leases[key] = (spec.dynamic.mount if spec.dynamic else "", holds)
        self._expiring[key] = bool(holds and max_expires is not None and max_expires - (backend_now or now) <= max(
            parse_duration(spec.overlap.window) * 2, EXPIRING_AT_LEAST))
        ROTATION_OVERDUE.set(sum(self._overdue.values()))
        LEASES_EXPIRING.set(sum(self._expiring.values()))
        for mount in {m for m, _ in self._leases.values() if m}:
            LEASES.labels(mount).set(sum(1 for m, held in self._leases.values() if m == mount and held))

    def moved(self, key: Hashable, strategy: str, previous: str | None, phase: str, now: datetime.datetime,
              change: Transition) -> None:
        """A policy went from PREVIOUS to PHASE: time in phase, rotations in progress, outcomes."""
        if previous not in IDLE:
            started = self._phase_started.pop(key, None)
            if started is not None:
                ROTATION_PHASE_SECONDS.labels(strategy, previous).observe(now.timestamp() - started)
            ROTATIONS_IN_PROGRESS.labels(strategy, previous).dec()
        if phase not in IDLE:
            self._phase_started[key] = now.timestamp()
            ROTATIONS_IN_PROGRESS.labels(strategy, phase).inc()
        if change.outcome is not None:
            ROTATIONS.labels(strategy, change.outcome).inc()
        if change.rollback_cause is not None:
            ROLLBACKS.labels(strategy, change.rollback_cause).inc()

    def forget(self, key: Hashable) -> None:
        for gauge in (self._overdue, self._expiring, self._leases):
            gauge.pop(key, None)
