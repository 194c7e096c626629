"""The runbook's steps, one module each: every step takes a Context and returns an Outcome (or raises
StepPending to come back later). Each checks whether its action already happened, so a step
re-entered after a restart never acts twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rotor.engines.incident.context import Context, Outcome
from rotor.engines.incident.steps.audit import audit
from rotor.engines.incident.steps.certificate import (
    audit_certificate,
    contain_certificate,
    identify_certificate,
    on_certificate,
    revoke_certificate,
    rotate_certificate,
)
from rotor.engines.incident.steps.contain import contain
from rotor.engines.incident.steps.identify import identify
from rotor.engines.incident.steps.prevent import prevent
from rotor.engines.incident.steps.revoke import revoke
from rotor.engines.incident.steps.rotate import rotate
from rotor.engines.incident.steps.transit import (
    audit_key,
    contain_key,
    identify_key,
    key_policy,
    revoke_key,
    rotate_key,
)
from rotor.engines.ports import PolicyView
from rotor.planning.incident import Step

StepFn = Callable[[Context], Awaitable[Outcome]]


def on_key(step: StepFn, key_step: Callable[[Context, PolicyView], Awaitable[Outcome]]) -> StepFn:
    """STEP, or KEY_STEP for an incident on a Transit key (its source's policy rotates a key: transit.py)."""
    async def run(ctx: Context) -> Outcome:
        policy = key_policy(ctx)
        return await (key_step(ctx, policy) if policy is not None else step(ctx))
    return run


RUNBOOK: dict[Step, StepFn] = {
    "contain": on_certificate(on_key(contain, contain_key), contain_certificate),
    "identify": on_certificate(on_key(identify, identify_key), identify_certificate),
    "rotate": on_certificate(on_key(rotate, rotate_key), rotate_certificate),
    "revoke": on_certificate(on_key(revoke, revoke_key), revoke_certificate),
    "audit": on_certificate(on_key(audit, audit_key), audit_certificate), "prevent": prevent,
}
