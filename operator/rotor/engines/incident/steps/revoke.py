"""Revoke: the leaked credential stops working. The exposed version is destroyed (once a replacement
is published), a leaked lease revoked, a leaked static role given a new password; then, where it can
be, the revocation is confirmed (a database login with the leaked credential must fail)."""

from __future__ import annotations

from rotor.api import keys
from rotor.backends.protocols import NotFound, StagedVersions
from rotor.engines.incident.context import Context, Outcome, StepPending
from rotor.engines.incident.steps.rotate import request_rotation
from rotor.planning import incident as plan
from rotor.planning import incident_radius as radius
from rotor.planning import times
from rotor.planning.leases import fingerprint, lease_key


async def revoke(ctx: Context) -> Outcome:
    status = ctx.state.status
    version = str(status.get("exposedVersion") or "")
    immediate = status.get("order") == "immediate"
    kind = ctx.credential.kind
    if not immediate or kind == "kv":
        # afterRotation: the policy's Revoking phase revokes; immediate kv: the replacement must exist
        # before the exposed version is destroyed (else nothing is left to deliver).
        ref, progress = await request_rotation(ctx)
        if progress.failed:
            raise StepPending(f"RotationPolicy {ref['policy']}: {progress.failed}", 10.0, keys.ROTATION_FAILED)
        if not (progress.published if immediate else progress.complete):
            raise StepPending(f"RotationPolicy {ref['policy']} rotating ({progress.phase or 'requested'})")
    methods: list[str] = []
    if kind == "dynamic":
        lease = await _revoke_lease(ctx, version)
        methods.append(f"lease {lease} revoked" if lease else "lease revoked by the rotation")
    elif kind == "static-role":
        role = (status.get("blastRadius") or {}).get("staticRole")
        if role:
            await _rotate_role(ctx, role)
            methods.append(f"static role {role} given a new password")
    if status.get("rotation"):
        # Only once a replacement is published: destroying the current version first would leave
        # the rotation nothing to build on (immediate dynamic/static: the rotation destroys it later).
        alive = await ctx.secret.list_versions()
        new_version = ((ctx.policy.status.get("rotation") or {}).get("new") or {}).get("version") \
            if ctx.policy else None
        if version and version in alive and version != new_version:
            await ctx.secret.destroy_versions([version])
        if version:
            methods.append(f"version {version} destroyed")
    confirmed, check = await confirm(ctx, version)
    blast = radius.revoked(status.get("blastRadius") or {}, times.iso(times.now(), millis=True))
    if not immediate:
        # The rotation is complete: a sync now shows the denylist at work. (Before a rotation
        # starts, a refused sync would hold it back: it waits for the SecretSource to be Ready.)
        ctx.deps.sources.sync_now(ctx.state.namespace, ctx.source.name)
    revocation = {"method": "; ".join(methods), "confirmed": confirmed, "check": check}
    if confirmed is False:
        return Outcome(f"{'; '.join(methods)}, but {check}", {"revocation": revocation, "blastRadius": blast},
                       condition_status="False", condition_reason=keys.STILL_VALID, warning=True)
    return Outcome(f"{'; '.join(methods)}; {check}", {"revocation": revocation, "blastRadius": blast})


async def _revoke_lease(ctx: Context, version: str) -> str | None:
    """Revoke the lease behind VERSION (recorded by the rotation); its fingerprint, or None if none."""
    lease_id = (await ctx.secret.custom_metadata()).get(lease_key(version)) if version else None
    if not lease_id:
        return None
    leases = ctx.leases()
    if await leases.lease_alive(lease_id):
        await leases.revoke_lease(lease_id)
    await ctx.secret.set_custom_metadata({lease_key(version): ""})
    return fingerprint(lease_id)


async def _rotate_role(ctx: Context, role: str) -> None:
    """A new password for the leaked static role's user, unless the backend set one since the incident
    started."""
    assert ctx.policy is not None and ctx.policy.spec is not None
    mount = ctx.policy.spec.overlap.mount
    backend = ctx.static_credentials()
    last = await backend.static_last_rotation(mount, role)
    if last is None or last < times.parse(ctx.state.status["timestamps"]["detected"]):
        await backend.rotate_static(mount, role)


async def confirm(ctx: Context, version: str) -> tuple[bool | None, str]:
    """Is the leaked credential rejected now? A database login with it must fail; where there is
    nothing to log in to, the backend's own view (version destroyed) is the check."""
    login = ctx.deps.view.logins.get(ctx.key)
    if login is None and version:
        try:
            data, _ = await ctx.secret.read_version(version)
            login = plan.login_fields(data)
        except NotFound:
            login = None
    if login and plan.db_target(login):
        vault = ctx.source_spec.vault
        connection = vault.connection if vault is not None else None
        target, refusal = plan.login_target(
            login, ctx.deps.login_hosts.get(connection or "", ()) if ctx.source_spec.provider == "vault" else (),
            f"vault_connections.{connection}.login_check_hosts" if connection else "login_check_hosts")
        if target is None:
            return None, refusal or "not checkable"  # nothing is dialled
        host, port, dbname = target  # values of the secret: used, never written into status
        outcome = await ctx.deps.login.try_login(host, port, dbname, login["username"], login["password"])
        if outcome == "refused":
            return True, "the database refused a login with the leaked credential"
        if outcome == "accepted":
            return False, "the database still accepts the leaked credential"
        return None, f"not confirmed: the database could not be reached ({outcome})"
    if ctx.credential.kind == "dynamic":
        return None, "database login not tried (the leaked login is no longer known to this operator)"
    if version and isinstance(ctx.secret, StagedVersions) and version not in await ctx.secret.list_versions():
        # Staging labels removed is all AWS allows: it deletes an unlabelled version itself, later.
        return None, (f"version {version} has no staging label left; AWS deletes it later, until then its id "
                      "still reads it (readers were moved to the replacement)")
    if version and version not in await ctx.secret.list_versions():
        label = plan.backend_label(ctx.source_spec.provider)
        return True, f"version {version} no longer exists in {label} (a value outside {label} is not checkable)"
    return None, "not checkable"
