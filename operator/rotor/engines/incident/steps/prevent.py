"""Prevent: once the rotation is complete, remove the emergency RotationPolicy, tighten the secret's
rotation schedule if asked, and write guardrails and recommendations for people."""

from __future__ import annotations

from rotor.api.common import parse_duration
from rotor.api.kinds import ROTATION_POLICY
from rotor.engines.incident.context import Context, Outcome, StepPending, own_policy
from rotor.engines.incident.steps.rotate import request_rotation
from rotor.planning import incident_radius as radius
from rotor.planning import incident_response as response


async def prevent(ctx: Context) -> Outcome:
    status = ctx.state.status
    namespace = ctx.state.namespace
    ref = dict(status.get("rotation") or {})
    guardrails = [response.denylist_kept(len(status.get("denylist") or []), status.get("denylistScope"))]
    if ref:
        _, progress = await request_rotation(ctx)
        if not progress.complete and not progress.failed:
            raise StepPending(f"waiting for RotationPolicy {ref['policy']} to complete")
    if ref.get("emergency"):
        await ctx.deps.kube.delete_object(ROTATION_POLICY.plural, namespace, ref["policy"])
        guardrails.append(response.emergency_removed(ref["policy"]))
    own = own_policy(ctx)
    tighten = ctx.spec.response.tighten_interval
    if tighten and own is not None and own.spec is not None:
        schedule = own.spec.schedule
        patch, message = response.tightened_schedule(
            schedule.model_dump(by_alias=True, exclude_none=True),
            parse_duration(own.spec.overlap.window).total_seconds(), tighten,
            parse_duration(tighten).total_seconds(),
            parse_duration(schedule.interval).total_seconds() if schedule.interval else None)
        if patch is not None:
            await ctx.deps.kube.patch_object(ROTATION_POLICY.plural, namespace, own.name, {"spec": {"schedule": patch}})
        guardrails.append(f"{message} (RotationPolicy {own.name})")
    elif tighten:
        guardrails.append(response.not_tightened(tighten))
    blast = status.get("blastRadius") or {}
    login = ctx.deps.view.logins.get(ctx.key) or {}
    advice = response.recommendations(
        where=ctx.spec.exposure.where, reference=ctx.spec.exposure.reference, credential=ctx.credential,
        has_policy=own is not None, database=bool(login) or ctx.credential.kind != "kv",
        env_consumers=radius.env_consumers(blast.get("consumers") or ()),
        revocation_confirmed=(status.get("revocation") or {}).get("confirmed"),
        unexpected_readers=radius.unexpected_readers(status.get("auditReads") or (), blast, ctx.secret.actor),
        unrotated=[])
    ctx.deps.view.logins.pop(ctx.key, None)  # the check is done: drop the leaked login from memory
    return Outcome(f"{len(guardrails)} guardrail(s), {len(advice)} recommendation(s)",
                   {"guardrails": guardrails, "recommendations": advice})
