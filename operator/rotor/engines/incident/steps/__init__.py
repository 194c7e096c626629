"""The runbook's steps, one module each: every step takes a Context and returns an Outcome (or raises
StepPending to come back later). Each checks whether its action already happened, so a step
re-entered after a restart never acts twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rotor.engines.incident.context import Context, Outcome
from rotor.engines.incident.steps.audit import audit
from rotor.engines.incident.steps.contain import contain
from rotor.engines.incident.steps.identify import identify
from rotor.engines.incident.steps.prevent import prevent
from rotor.engines.incident.steps.revoke import revoke
from rotor.engines.incident.steps.rotate import rotate
from rotor.planning.incident import Step

RUNBOOK: dict[Step, Callable[[Context], Awaitable[Outcome]]] = {
    "contain": contain, "identify": identify, "rotate": rotate, "revoke": revoke, "audit": audit, "prevent": prevent,
}
