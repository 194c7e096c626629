"""Identify: the blast radius. Every workload and Pod reading the exposed Secret (any way a pod spec
can name it), their ServiceAccounts, the lease or static role involved, and when the exposure began;
then the order of the rest of the runbook."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from rotor.engines.incident.context import Context, Outcome
from rotor.planning import incident as plan
from rotor.planning import incident_radius as radius
from rotor.planning import times
from rotor.planning.leases import fingerprint, lease_key
from rotor.planning.podspec import WORKLOAD_KINDS


async def consumers(ctx: Context) -> list[dict[str, Any]]:
    """Every workload and Pod of the incident's namespace reading its target Secret."""
    listed = await asyncio.gather(*(ctx.deps.kube.list_objects(kind.group, kind.version, kind.plural,
                                                               ctx.state.namespace) for kind in WORKLOAD_KINDS))
    objects = [(kind.kind, body) for kind, bodies in zip(WORKLOAD_KINDS, listed, strict=True) for body in bodies]
    return radius.consumers(ctx.target, objects)


async def identify(ctx: Context) -> Outcome:
    namespace = ctx.state.namespace
    found = await consumers(ctx)
    status = ctx.state.status
    version = str(status.get("exposedVersion") or "")
    leases: list[str] = []
    static_role = None
    active = dict(ctx.policy.status.get("active") or {}) if ctx.policy else {}
    if ctx.credential.kind == "dynamic":
        lease_id = (await ctx.secret.custom_metadata()).get(lease_key(version)) if version else None
        if lease_id:
            leases.append(fingerprint(lease_id))
        elif active.get("lease") and active.get("version") == version:
            leases.append(active["lease"])  # already a fingerprint
    elif ctx.credential.kind == "static-role":
        static_role = await _exposed_role(ctx, active)
    created = await ctx.secret.version_created(version) if version else None
    order, why = plan.choose_order(ctx.spec.response.order, len(found))
    account = ctx.source_spec.service_account_name
    namespaces, accounts = radius.readers(found, (namespace, account))
    role = ctx.source_spec.vault.role if ctx.source_spec.vault is not None else None
    blast = radius.identified(
        status.get("blastRadius") or {}, found=found, namespaces=namespaces, accounts=accounts, leases=leases,
        static_role=static_role, identity=radius.source_identity(namespace, account, role),
        policy=ctx.policy.name if ctx.policy else None,
        window_start=times.iso(created, millis=True) if created else status["timestamps"]["detected"])
    names = ", ".join(f"{c['kind']}/{c['name']}" for c in found) or "none"
    return Outcome(f"{len(found)} consumer(s) of Secret {ctx.target}: {names}; order {order} ({why})",
                   {"blastRadius": blast, "order": order})


async def _exposed_role(ctx: Context, active: Mapping[str, Any]) -> str | None:
    """The static role whose user the leaked login is (else the one the policy last had active)."""
    assert ctx.policy is not None and ctx.policy.spec is not None
    login = ctx.deps.view.logins.get(ctx.key) or {}
    if login.get("username"):
        backend = ctx.static_credentials()
        overlap = ctx.policy.spec.overlap
        for role in overlap.static_roles:
            if (await backend.static_credentials(overlap.mount, role))["username"] == login["username"]:
                return role
    found: str | None = active.get("role")
    return found
