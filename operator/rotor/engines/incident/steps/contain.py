"""Contain: the leaked value's keyed digests go on the denylist every SecretSource enforces, so Rotor
never delivers it again, even if it is written back into the backend."""

from __future__ import annotations

from rotor.api import keys
from rotor.backends.protocols import NotFound
from rotor.engines.incident.context import Context, Outcome, StepPending, peers
from rotor.observability.secrecy import remember
from rotor.planning import incident as plan
from rotor.planning import incident_radius as radius
from rotor.planning.hashing import value_hmac


async def contain(ctx: Context) -> Outcome:
    version = ctx.state.status.get("exposedVersion")
    try:
        data, found = await ctx.secret.read_version(str(version) if version else None)
    except NotFound:
        found = None
    if found is None:
        return await _gone(ctx, version)
    remember({k: v.encode() for k, v in data.items()})  # masked in any log line that might quote it
    leaked, problem = plan.leaked_keys(data, ctx.credential, has_policy=ctx.policy is not None,
                                       requested=ctx.spec.response.key)
    if problem:
        raise StepPending(problem, 30.0, keys.CANNOT_FINGERPRINT)
    digests = {value_hmac(ctx.deps.sources.hmac_key, data[k].encode()) for k in leaked}
    if ctx.source.status.get("syncedVersion") == found and ctx.source.status.get("dataHmac"):
        digests.add(str(ctx.source.status["dataHmac"]))  # the whole delivered Secret, templates included
    login = plan.login_fields(data)
    if login is not None:
        ctx.deps.view.logins[ctx.key] = login
    ctx.deps.view.set_denylist(ctx.key, frozenset(digests))
    blast = radius.contained(where=ctx.secret.where, versions=[found], keys=leaked,
                             namespace=ctx.state.namespace, target=ctx.target)
    return Outcome(f"{len(digests)} digest(s) of version {found} ({', '.join(leaked)}) denylisted: Rotor refuses "
                   "to deliver the leaked value again, even if it is written back",
                   {"denylist": sorted(digests), "exposedVersion": found, "blastRadius": blast})


async def _gone(ctx: Context, version: str | None) -> Outcome:
    """The exposed version is no longer readable (destroyed): carry over an earlier incident's digests."""
    me, found = await peers(ctx)
    earlier = plan.merged_with(me, found)
    digests: list[str] = []
    if earlier is not None:
        other = ctx.deps.view.incidents.get((ctx.state.namespace, earlier.name))
        digests = list((other.status if other else {}).get("denylist") or ())
    if digests:
        ctx.deps.view.set_denylist(ctx.key, frozenset(digests))
    blast = radius.contained(where=ctx.secret.where, versions=[version] if version else [], keys=[],
                             namespace=ctx.state.namespace, target=ctx.target)
    why = f"; {len(digests)} digest(s) carried over from LeakIncident {earlier.name}" if earlier else ""
    return Outcome(f"version {version} is no longer readable in the backend (destroyed): it cannot be "
                   f"delivered{why}", {"denylist": digests, "blastRadius": blast},
                   condition_reason=keys.ALREADY_DESTROYED)
