"""Letting go of a Secret: when its SecretSource is deleted, or when spec.target.name moves on.

The Secret follows deletionPolicy (Delete: what Rotor wrote goes; Retain: it stays, free of Rotor's
marks), and only if this source holds it (planning.sync_claims.hold): a Secret someone else owns or
took over is never touched, whatever its labels say.
"""

from __future__ import annotations

import logging

from rotor.engines.secretsource.view import SourceState
from rotor.kube import Kube, KubeError
from rotor.planning.sync import SyncPlan
from rotor.planning.sync_claims import hold
from rotor.planning.sync_status import write_failure

log = logging.getLogger("rotor.sync")


async def release(kube: Kube, state: SourceState, name: str, *, delete: bool) -> None:
    """Let go of Secret NAME if STATE's source holds it (created it, or merged into it with its owner's
    leave); a Secret it does not hold is never touched."""
    secret = await kube.read_secret(state.namespace, name)
    held = hold(secret, state.owner) if secret is not None else None
    if secret is not None and held is not None:
        await kube.release_secret(state.namespace, secret, state.uid, delete=delete, merge=held == "merged")


async def let_go_of_old_target(kube: Kube, state: SourceState, plan: SyncPlan) -> SyncPlan:
    """Once the target is written under a new spec.target.name (status.targetSecret still names the
    old one), the Secret of the old name follows deletionPolicy: it would otherwise stay behind, never
    refreshed again. A failure keeps status.targetSecret on the old name, so the next sync retries."""
    old = state.status.get("targetSecret")
    if plan.action == "fail" or not old or old == plan.target or state.spec is None:
        return plan
    policy = state.spec.target.deletion_policy
    try:
        await release(kube, state, old, delete=policy == "Delete")
    except KubeError as err:
        return SyncPlan("fail", plan.target, write_failure(old, err.status, err.reason, err.message).reason,
                        f"releasing Secret {old} (the previous spec.target.name): {err.message or err.reason}")
    log.info("SecretSource %s/%s: previous target Secret %s released (deletionPolicy %s)", state.namespace,
             state.name, old, policy)
    return plan
