"""The runbook on a Transit key: a LeakIncident whose SecretSource is rotated by a RotationPolicy of
strategy transit is a leak of that key. There is no overlap: the key is rotated and its minimum versions
raised to the new one at once, so the exposed versions stop decrypting, verifying, encrypting and
signing; an exported key's Secret gets only the new version.

Contain records the exposed key version (spec.version, else the latest) and, for an exported key,
denylists the delivered material of the exposed versions. Identify lists the workloads reading the
Secret only for an exported key (a key used in place reaches no workload); audit lists who used,
exported or backed up the key (Vault's audit log), with the key versions used. Rotate and revoke (in
either order) do the same idempotent response: a key version after the recorded exposed one is adopted,
never made twice, and minimums only go up. Only the capability protocols are used (KeyRing,
VersionStore).
"""

from __future__ import annotations

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.api.kinds import LEAK_INCIDENT
from rotor.backends.protocols import Actor, KeyRing, KeyVersions, NotFound, VersionStore
from rotor.engines.incident.context import Context, Outcome, StepPending
from rotor.engines.incident.context import key_policy as find_key_policy
from rotor.engines.incident.steps.audit import audit_requests
from rotor.engines.incident.steps.identify import consumers
from rotor.engines.ports import PolicyView
from rotor.observability.secrecy import remember
from rotor.planning import incident as plan
from rotor.planning import incident_denylist as denylist
from rotor.planning import incident_keys as keyed
from rotor.planning import incident_radius as radius
from rotor.planning import times
from rotor.planning.capabilities import missing
from rotor.planning.hashing import value_hmac
from rotor.planning.transit import delivery_data, holds, raised, versions_in
from rotor.planning.vault_audit import key_requests


def key_policy(ctx: Context) -> PolicyView | None:
    """The transit RotationPolicy of the incident's SecretSource (None: the incident is not on a key). A
    source whose value another policy rotates is a value's leak, not a key's."""
    if ctx.policy is not None:
        return None
    return find_key_policy(ctx.deps.policies, ctx.state.namespace, ctx.source.name)


def _ring(ctx: Context, policy: PolicyView) -> KeyRing:
    """The key (and the source's secret), acting as the policy's identity (the one allowed to rotate it)."""
    assert policy.spec is not None
    backend = ctx.deps.backends.get(ctx.source_spec.provider)
    identity = policy.spec.identity
    actor = Actor(identity.service_account_name, identity.role) if identity else Actor()
    ring = backend.bind(ctx.state.namespace, ctx.source_spec, actor) if backend is not None else None
    if ring is None or Capability.KEY_VERSIONS not in ctx.capabilities or not isinstance(ring, KeyRing):
        problem = missing({Capability.KEY_VERSIONS: "spec.secretSourceRef"}, ctx.source_spec.provider, frozenset(),
                          LEAK_INCIDENT.kind)
        raise StepPending(f"SecretSource {ctx.source.name}: {problem}", 300.0, keys.UNSUPPORTED)
    return ring


def _name(policy: PolicyView) -> tuple[str, str]:
    assert policy.spec is not None and policy.spec.transit is not None
    return policy.spec.transit.mount, policy.spec.transit.key


async def contain_key(ctx: Context, policy: PolicyView) -> Outcome:
    mount, key = _name(policy)
    ring = _ring(ctx, policy)
    try:
        exposed = int(ctx.spec.version) if ctx.spec.version else (await ring.key_versions(mount, key)).latest
    except NotFound as err:
        raise StepPending(f"RotationPolicy {policy.name}: {err.message}", 30.0, keys.NOT_FOUND) from None
    export = policy.spec.transit.export if policy.spec and policy.spec.transit else None
    digests: set[str] = set()
    leaked: list[str] = []
    if export is not None:  # what the Secret delivered of the exposed versions
        synced = ctx.source.status.get("syncedVersion")
        try:
            data, _ = await ctx.secret.read_version(str(synced) if synced else None)
        except NotFound:
            data = {}
        leaked = [f"{export.prefix}{v}" for v in versions_in(data, export.prefix) if v <= exposed]
        remember({name: data[name].encode() for name in leaked})  # masked in any log line that might quote it
        accepted, _ = denylist.screen({name: data[name] for name in leaked})
        digests = {value_hmac(ctx.deps.sources.hmac_key, data[name].encode()) for name in accepted}
    scope = ctx.deps.denylists.scope(ctx.state.namespace, ctx.secret.where)
    if digests:
        await ctx.deps.denylists.put(ctx.state.uid, f"{ctx.state.namespace}/{ctx.state.name}", scope,
                                     frozenset(digests))
    blast = radius.contained(where=f"{ctx.secret.where.split('/')[0]}/{mount}/keys/{key}", versions=[str(exposed)],
                             keys=leaked, namespace=ctx.state.namespace, target=ctx.target)
    if digests:
        listed = (f"the delivered material of key versions up to {exposed} ({', '.join(leaked)}) denylisted for "
                  f"{scope.describe()}")
    elif export is None:
        listed = "nothing to denylist: Rotor delivers no material of this key (it is used in place)"
    else:
        listed = f"nothing to denylist: the Secret holds no material of key versions up to {exposed}"
    return Outcome(f"leak of Transit key {mount}/{key} version {exposed}: {listed}",
                   {"exposedVersion": str(exposed), "denylist": sorted(digests),
                    "denylistScope": scope.describe() if digests else None, "blastRadius": blast})


async def identify_key(ctx: Context, policy: PolicyView) -> Outcome:
    """The blast radius of a key: the workloads reading its Secret when it is exported (none when it is
    used in place), the identity that acts on it, and when the exposed version came to exist."""
    mount, key = _name(policy)
    assert policy.spec is not None
    status = ctx.state.status
    exposed = int(str(status.get("exposedVersion") or "0"))
    try:
        versions = await _ring(ctx, policy).key_versions(mount, key)
    except NotFound as err:
        raise StepPending(f"RotationPolicy {policy.name}: {err.message}", 30.0, keys.NOT_FOUND) from None
    exported = policy.spec.transit is not None and policy.spec.transit.export is not None
    found = await consumers(ctx) if exported else []
    order, why = plan.choose_order(ctx.spec.response.order, len(found))
    identity = policy.spec.identity
    account, role = ((identity.service_account_name, identity.role) if identity else
                     (ctx.source_spec.service_account_name, ctx.source_spec.vault.role if ctx.source_spec.vault
                      else None))
    namespaces, accounts = radius.readers(found, (ctx.state.namespace, account))
    blast = radius.identified(
        status.get("blastRadius") or {}, found=found, namespaces=namespaces, accounts=accounts, leases=[],
        static_role=None, identity=radius.source_identity(ctx.state.namespace, account, role), policy=policy.name,
        window_start=keyed.key_window_start(exposed=exposed, latest=versions.latest,
                                            latest_created=versions.latest_created,
                                            detected=status["timestamps"]["detected"]))
    message = keyed.key_identified(key=f"{mount}/{key}", version=str(exposed), exported=exported,
                                   delivered=(status.get("blastRadius") or {}).get("keys") or [],
                                   target=ctx.target, found=found, order=order, why=why)
    return Outcome(message, {"blastRadius": blast, "order": order})


async def audit_key(ctx: Context, policy: PolicyView) -> Outcome:
    """Who used, exported or backed up the key while the exposed version was valid, and which versions."""
    mount, key = _name(policy)
    return await audit_requests(ctx, key_requests(mount, key), keyed.key_subject(mount=mount, key=key),
                                transit=True)


async def respond(ctx: Context, policy: PolicyView) -> tuple[int, KeyVersions]:
    """Rotate past the exposed version (unless a version after it exists) and raise both minimums to the
    latest at once; an exported key's secret is rewritten to hold only the latest. (exposed, versions)."""
    mount, key = _name(policy)
    ring = _ring(ctx, policy)
    exposed = int(str(ctx.state.status.get("exposedVersion") or "0"))
    versions = await ring.key_versions(mount, key)
    if versions.latest <= exposed:
        await ring.rotate_key(mount, key)
        versions = await ring.key_versions(mount, key)
    minimums = raised(versions.min_decryption, versions.min_encryption, versions.latest)
    if minimums is not None:
        await ring.set_min_versions(mount, key, decryption=minimums[0], encryption=minimums[1])
        versions = KeyVersions(versions.latest, minimums[0], minimums[1], versions.latest_created)
    export = policy.spec.transit.export if policy.spec and policy.spec.transit else None
    if export is not None:
        if not isinstance(ring, VersionStore):
            raise StepPending(f"SecretSource {ctx.source.name}: its backend cannot write the exported key", 300.0,
                              keys.UNSUPPORTED)
        store: VersionStore = ring  # the source's secret, written as the policy's identity
        data, kv = await store.read_version()
        if kv is None or not holds(data, export.prefix, [versions.latest]):
            material = await ring.export_key(mount, key, export.type, versions.latest)
            await store.write_version(delivery_data(data, export.prefix, {versions.latest: material}), kv or "0")
        alive = await store.list_versions()
        await store.destroy_versions(alive[:-1])  # older KV versions hold the exposed material
        ctx.deps.sources.sync_now(ctx.state.namespace, ctx.source.name)
    return exposed, versions


async def rotate_key(ctx: Context, policy: PolicyView) -> Outcome:
    mount, key = _name(policy)
    exposed, versions = await respond(ctx, policy)
    return Outcome(f"Transit key {mount}/{key} rotated to version {versions.latest} with no overlap (RotationPolicy "
                   f"{policy.name}'s key); versions up to {exposed} retired at once")


async def revoke_key(ctx: Context, policy: PolicyView) -> Outcome:
    mount, key = _name(policy)
    exposed, versions = await respond(ctx, policy)
    confirmed = versions.min_decryption > exposed
    check = (f"Vault's minimum decryption version of {mount}/{key} is {versions.min_decryption}: version "
             f"{exposed} no longer decrypts, verifies, encrypts or signs")
    revocation = {"method": f"Transit key minimums raised to {versions.min_decryption}", "confirmed": confirmed,
                  "check": check}
    blast = radius.revoked(ctx.state.status.get("blastRadius") or {}, times.iso(times.now(), millis=True))
    return Outcome(f"{revocation['method']}; {check}", {"revocation": revocation, "blastRadius": blast})
