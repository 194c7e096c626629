"""Contain: the leaked value's keyed digests go on a denylist, so Rotor never delivers it again, even if
it is written back into the backend. The list reaches as far as the leak does (the SecretSources of
the incident's namespace reading the same backend location; cluster-wide only from the operator's
namespace), is kept in Rotor's own record until the incident is resolved, and never holds a value
too short or too common to identify one credential."""

from __future__ import annotations

from rotor.api import keys
from rotor.backends.protocols import NotFound
from rotor.engines.incident.context import Context, Outcome, StepPending, peers
from rotor.observability.secrecy import remember
from rotor.planning import incident as plan
from rotor.planning import incident_denylist as denylist
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
    accepted, refused = denylist.screen({k: data[k] for k in leaked})
    digests = {value_hmac(ctx.deps.sources.hmac_key, data[k].encode()) for k in accepted}
    if accepted and ctx.source.status.get("syncedVersion") == found and ctx.source.status.get("dataHmac"):
        digests.add(str(ctx.source.status["dataHmac"]))  # the whole delivered Secret, templates included
    login = plan.login_fields(data)
    if login is not None:
        ctx.deps.view.logins[ctx.key] = login
    scope = ctx.deps.denylists.scope(ctx.state.namespace, ctx.secret.where)
    if digests:
        await ctx.deps.denylists.put(ctx.state.uid, f"{ctx.state.namespace}/{ctx.state.name}", scope,
                                     frozenset(digests))
    blast = radius.contained(where=ctx.secret.where, versions=[found], keys=leaked,
                             namespace=ctx.state.namespace, target=ctx.target)
    patch = {"denylist": sorted(digests), "denylistScope": scope.describe() if digests else None,
             "exposedVersion": found, "blastRadius": blast}
    if refused:
        await _refused(ctx, refused)
    listed = (f"{len(digests)} digest(s) of version {found} ({', '.join(accepted)}) denylisted for "
              f"{scope.describe()}: Rotor refuses to deliver the leaked value again, even if it is written back")
    if not refused:
        return Outcome(listed, patch)
    skipped = f"{', '.join(k for k, _ in refused)} not denylisted (see condition {keys.DENYLIST_REFUSED})"
    if not digests:
        return Outcome(f"nothing denylisted: {skipped}; the rotation replaces the value", patch,
                       condition_status="False", condition_reason=keys.NOT_IDENTIFYING, warning=True)
    return Outcome(f"{listed}; {skipped}", patch, warning=True)


async def _refused(ctx: Context, refused: list[tuple[str, str]]) -> None:
    """The keys whose values are too weak to be entries, and why (never the values): a condition of
    their own and a Warning Event, written before the step's outcome."""
    journal = ctx.deps.journal
    message = denylist.refused_message(refused)
    conditions = journal.condition(ctx.state, keys.DENYLIST_REFUSED, "True", keys.NOT_IDENTIFYING, message)
    await journal.write(ctx.state, {"conditions": conditions})
    await journal.event(ctx.state, "Warning", keys.DENYLIST_REFUSED, message)


async def _gone(ctx: Context, version: str | None) -> Outcome:
    """The exposed version is no longer readable (destroyed): carry over an earlier incident's digests."""
    me, found = await peers(ctx)
    earlier = plan.merged_with(me, found)
    digests: list[str] = []
    if earlier is not None:
        other = ctx.deps.view.incidents.get((ctx.state.namespace, earlier.name))
        digests = list((other.status if other else {}).get("denylist") or ())
    scope = ctx.deps.denylists.scope(ctx.state.namespace, ctx.secret.where)
    if digests:
        await ctx.deps.denylists.put(ctx.state.uid, f"{ctx.state.namespace}/{ctx.state.name}", scope,
                                     frozenset(digests))
    blast = radius.contained(where=ctx.secret.where, versions=[version] if version else [], keys=[],
                             namespace=ctx.state.namespace, target=ctx.target)
    why = f"; {len(digests)} digest(s) carried over from LeakIncident {earlier.name}" if earlier else ""
    return Outcome(f"version {version} is no longer readable in the backend (destroyed): it cannot be "
                   f"delivered{why}", {"denylist": digests, "denylistScope": scope.describe() if digests else None,
                                       "blastRadius": blast},
                   condition_reason=keys.ALREADY_DESTROYED)
