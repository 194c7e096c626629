"""Rotate: through the secret's RotationPolicy (or an emergency one the incident creates), so readers
move with the same overlap and verification as any rotation. The request is persisted before it is
made, and its rotate-now token is derived from the incident, so asking again changes nothing."""

from __future__ import annotations

from typing import Any

from rotor.api import keys
from rotor.api.kinds import ROTATION_POLICY
from rotor.engines.incident.context import Context, Outcome, StepPending
from rotor.engines.incident.journal import ACTOR
from rotor.kube import KubeError
from rotor.planning import incident as plan
from rotor.planning import incident_response as response
from rotor.planning import times


async def rotate(ctx: Context) -> Outcome:
    ref, progress = await request_rotation(ctx)
    if progress.failed:
        raise StepPending(f"RotationPolicy {ref['policy']}: {progress.failed}; the incident continues when a "
                          f"rotation of it completes (fix the cause, then set {keys.ROTATE_NOW})",
                          10.0, keys.ROTATION_FAILED)
    if not progress.readers_moved:
        raise StepPending(f"RotationPolicy {ref['policy']} rotating ({progress.phase or 'requested'})")
    assert ctx.policy is not None
    rotation = ctx.policy.status.get("rotation") or {}
    new_version = (rotation.get("new") or {}).get("version")
    ctx.deps.sources.sync_now(ctx.state.namespace, ctx.source.name)
    return Outcome(f"readers moved to version {new_version} (RotationPolicy {ref['policy']}, rotation "
                   f"{rotation.get('id')})",
                   {"rotation": {**ref, "rotationId": rotation.get("id"), "newVersion": new_version}})


async def request_rotation(ctx: Context) -> tuple[dict[str, Any], plan.PolicyProgress]:
    """Ask the RotationPolicy (or a new emergency one) to rotate, once; where its rotation stands.
    Sets ctx.policy to the policy asked."""
    state = ctx.state
    ref = dict(state.status.get("rotation") or {})
    if not ref:
        ref, message = response.rotation_request(ctx.policy.name if ctx.policy else None, incident=state.name,
                                                 uid=state.uid, now=times.now())
        await ctx.deps.journal.record(state, ACTOR, "RotationRequested", message, {"rotation": ref})
    policy = ctx.deps.policies.policy(state.namespace, ref["policy"])
    if policy is None:
        if ref.get("emergency"):
            await _create_emergency(ctx, ref)
        raise StepPending(f"waiting for RotationPolicy {ref['policy']}")
    progress = plan.policy_progress(policy.status, ref["requestedAt"], state.status.get("exposedVersion"))
    if not progress.ours and policy.rotate_now != ref["token"]:
        await ctx.deps.kube.patch_object(ROTATION_POLICY.plural, state.namespace, ref["policy"],
                                         response.rotate_now_patch(ref["token"]))
    ctx.policy = policy
    return ref, progress


async def _create_emergency(ctx: Context, ref: dict[str, Any]) -> None:
    identity = ctx.spec.response.identity
    body = response.emergency_policy(
        ref, incident=ctx.state.name, uid=ctx.state.uid, source=ctx.source.name,
        leaked=(ctx.state.status.get("blastRadius") or {}).get("keys") or [], window=ctx.spec.response.emergency_window,
        identity=identity.model_dump(by_alias=True) if identity is not None else None)
    try:
        await ctx.deps.kube.create_object(ROTATION_POLICY.plural, ctx.state.namespace, body)
    except KubeError as err:
        if not err.conflict:
            raise
