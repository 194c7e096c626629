"""The leak runbook as pure functions over plain data.

    Open -> Contained -> Identified -> Rotated -> Revoked -> Audited -> Prevented -> (spec.resolved) Resolved
                                   \\-> Revoked -> Rotated -/        (order immediate)

The engine (rotor.engines.incident) persists the step it is about to take before acting and the
phase's timestamp after, so a restarted operator re-enters an unfinished step (each step's action checks
whether it already happened) and never repeats a finished one. Everything here takes names, versions,
digests and timestamps; values never reach this module except as HMAC digests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rotor.planning import times

Step = Literal["contain", "identify", "rotate", "revoke", "audit", "prevent"]
Order = Literal["immediate", "afterRotation"]
PHASE_OF: dict[Step, str] = {"contain": "Contained", "identify": "Identified", "rotate": "Rotated",
                             "revoke": "Revoked", "audit": "Audited", "prevent": "Prevented"}
STAMP_OF: dict[Step, str] = {"contain": "contained", "identify": "identified", "rotate": "rotated",
                             "revoke": "revoked", "audit": "audited", "prevent": "prevented"}
FINISHED = frozenset({"Prevented", "Resolved"})
_SECRET_NAME = re.compile(r"pass|secret|token|key|cred|private|auth", re.IGNORECASE)


def steps(order: Order) -> tuple[Step, ...]:
    if order == "immediate":
        return ("contain", "identify", "revoke", "rotate", "audit", "prevent")
    return ("contain", "identify", "rotate", "revoke", "audit", "prevent")


def next_step(order: Order | None, done: Mapping[str, Any]) -> Step | None:
    """The first step whose timestamp is not yet recorded (None: the runbook is complete).
    Before the order is chosen (it is chosen when identifying) the first two steps are the same."""
    for step in steps(order or "afterRotation"):
        if not done.get(STAMP_OF[step]):
            return step
    return None


def phase(order: Order | None, done: Mapping[str, Any], resolved: bool) -> str:
    """The last phase reached, in runbook order."""
    if resolved:
        return "Resolved"
    reached = "Open"
    for step in steps(order or "afterRotation"):
        if not done.get(STAMP_OF[step]):
            break
        reached = PHASE_OF[step]
    return reached


def choose_order(requested: Order | None, consumers: int) -> tuple[Order, str]:
    """The response order, and why: readers get an overlap unless the reporter asked to revoke first."""
    if requested is not None:
        return requested, f"spec.response.order is {requested}"
    if consumers:
        return "afterRotation", f"{consumers} consumer(s) read the secret: rotate with overlap, then revoke"
    return "immediate", "nothing consumes the secret: revoke first"


# -- which values leaked ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Credential:
    """How the secret rotates, as far as the incident needs to know (from its RotationPolicy, if any)."""

    kind: Literal["kv", "dynamic", "static-role"]
    generator_key: str | None = None  # the property a generator rewrites (kv strategies)


def credential_kind(strategy: str | None, static_roles: Sequence[str], generator_key: str | None) -> Credential:
    if strategy == "dynamic":
        return Credential("dynamic")
    if strategy == "overlap" and len(static_roles) == 2:
        return Credential("static-role")
    return Credential("kv", generator_key)


def leaked_keys(data_keys: Iterable[str], credential: Credential, *, has_policy: bool,
                requested: str | None) -> tuple[tuple[str, ...], str | None]:
    """The properties whose values are denylisted (exactly the ones the rotation replaces, so the new
    value is never refused), or a message saying what to set. Database credentials: the password
    (the username is an identifier, and a dynamic one is new per lease anyway)."""
    keys = sorted(set(data_keys))
    if requested is not None:
        if requested in keys:
            return (requested,), None
        return (), f"spec.response.key {requested!r} is not a property of the secret (has: {', '.join(keys)})"
    if credential.kind in ("dynamic", "static-role"):
        return (("password",), None) if "password" in keys else ((), "the database credential has no password key")
    if has_policy and credential.generator_key:
        if credential.generator_key in keys:
            return (credential.generator_key,), None
        return (), f"the RotationPolicy rotates {credential.generator_key!r}, which the secret does not have"
    candidates = sorted((k for k in keys if _SECRET_NAME.search(k)), key=lambda k: (k != "password", k))
    if candidates:
        return (candidates[0],), None
    if len(keys) == 1:
        return (keys[0],), None
    return (), (f"cannot tell which property holds the credential (has: {', '.join(keys)}); "
                "set spec.response.key")


def unrotated_secret_keys(data_keys: Iterable[str], leaked: Sequence[str]) -> list[str]:
    """Other properties named like credentials: they leaked too, but no rotation here replaces them."""
    return sorted(k for k in data_keys if k not in leaked and _SECRET_NAME.search(k))


def db_target(values: Mapping[str, str]) -> tuple[str, int, str] | None:
    """(host, port, database) when the secret is a database login that can be tried, else None."""
    if not values.get("username") or not values.get("password") or not values.get("host"):
        return None
    try:
        port = int(values.get("port") or 5432)
    except ValueError:
        return None
    return values["host"], port, values.get("dbname") or values.get("database") or "postgres"


_DBNAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


def login_target(values: Mapping[str, str], allowed: Iterable[str],
                 setting: str) -> tuple[tuple[str, int, str] | None, str | None]:
    """The one database the revocation check may dial for the login VALUES, or why it may not: only
    a single host:port the operator allow-listed (SETTING names where), never a host list or a
    socket path; the reason names no value (host and port are values of the secret)."""
    if any(c in values.get(k, "") for k in ("host", "port") for c in ", \t"):
        return None, "not confirmed: a host list is refused (one host per attempt)"
    target = db_target(values)
    if target is None:
        return None, "not checkable"
    host, port, dbname = target
    if not _DBNAME.match(dbname):
        return None, "not confirmed: the database name is not a plain name"
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if f"{bracketed}:{port}" not in set(allowed):
        return None, f"not confirmed: host not allow-listed (operator setting {setting})"
    return target, None


def backend_label(provider: str) -> str:
    """A backend as messages name it."""
    return {"vault": "Vault"}.get(provider, f"the {provider} backend")


LOGIN_KEYS = ("username", "password", "host", "port", "dbname", "database")


def login_fields(values: Mapping[str, str]) -> dict[str, str] | None:
    """The properties of a database login that can be tried (values: memory only), else None."""
    return {k: values[k] for k in LOGIN_KEYS if k in values} if db_target(values) else None


# -- ordering of incidents on one secret -------------------------------------------------------------

@dataclass(frozen=True)
class Peer:
    """Another incident, reduced to what ordering needs."""

    name: str
    created: str  # creationTimestamp (RFC 3339, second precision: compares as text)
    source: str | None
    phase: str | None
    resolved: bool
    exposed_version: str | None = None
    revoked: bool = False


def peer_of(body: Mapping[str, Any], *, target: str, source: str) -> Peer:
    """A LeakIncident as listed from the API server. One naming TARGET (the Secret SOURCE delivers)
    by spec.targetSecretRef counts as being about SOURCE."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    named = status.get("source") or (spec.get("secretSourceRef") or {}).get("name")
    if named is None and (spec.get("targetSecretRef") or {}).get("name") == target:
        named = source
    return Peer(meta.get("name", ""), str(meta.get("creationTimestamp") or ""), named, status.get("phase"),
                bool(spec.get("resolved")), status.get("exposedVersion"),
                bool((status.get("timestamps") or {}).get("revoked")))


def blocker(me: Peer, peers: Iterable[Peer]) -> Peer | None:
    """The earliest unfinished incident on the same secret created before ME (ties: by name).
    Incidents on one secret run one at a time, in creation order, never racing."""
    earlier = [p for p in peers if p.name != me.name and p.source is not None and p.source == me.source
               and (p.created, p.name) < (me.created, me.name) and not p.resolved and p.phase not in FINISHED]
    return min(earlier, key=lambda p: (p.created, p.name), default=None)


def merged_with(me: Peer, peers: Iterable[Peer]) -> Peer | None:
    """An earlier incident that already revoked the same exposed version: this one reuses its work."""
    return next((p for p in sorted(peers, key=lambda p: (p.created, p.name))
                 if p.name != me.name and p.source == me.source and p.revoked and me.exposed_version is not None
                 and p.exposed_version == me.exposed_version and (p.created, p.name) < (me.created, me.name)), None)


# -- rotation through the RotationPolicy --------------------------------------------------------------

READERS_MOVED = frozenset({"Overlapping", "Revoking", "Complete"})
PUBLISHED = frozenset({"Propagating", "Verifying", "Overlapping", "Revoking", "Complete"})


@dataclass(frozen=True)
class PolicyProgress:
    """Where the rotation the incident asked for stands, from the RotationPolicy's status."""

    ours: bool  # a rotation started at or after the incident's request
    phase: str | None
    published: bool
    readers_moved: bool
    complete: bool
    failed: str | None  # RolledBack/Failed reason


def policy_progress(status: Mapping[str, Any], requested_at: str, exposed_version: str | None) -> PolicyProgress:
    """A rotation counts when it replaces the exposed version (it started from that version or a later
    one), whether it was asked for by the incident or already running; without versions, when it
    started at or after the request."""
    rotation = status.get("rotation") or {}
    started = str(rotation.get("startedAt") or "")
    old = str((rotation.get("old") or {}).get("version") or "")
    if exposed_version and exposed_version.isdigit() and old.isdigit():
        ours = int(old) >= int(exposed_version)
    else:
        ours = bool(started) and _seconds(started) >= _seconds(requested_at)
    policy_phase = status.get("phase") if ours else None
    failed = None
    if ours and policy_phase in ("RolledBack", "Failed"):
        failed = f"rotation {rotation.get('id', '')} {policy_phase}: {rotation.get('reason') or ''}".strip()
    return PolicyProgress(ours, policy_phase, ours and policy_phase in PUBLISHED,
                          ours and policy_phase in READERS_MOVED, ours and policy_phase == "Complete", failed)


def _seconds(text: str) -> str:
    """RFC 3339 truncated to whole seconds (RotationPolicy times have no fraction)."""
    return times.parse(text).replace(microsecond=0).isoformat()


def resolver(managed_fields: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """(field manager, time) of the latest write that owns spec.resolved."""
    best: tuple[str, str | None] | None = None
    for entry in managed_fields:
        fields = entry.get("fieldsV1") or {}
        if "f:resolved" in (fields.get("f:spec") or {}):
            when = entry.get("time")
            if best is None or str(when or "") >= str(best[1] or ""):
                best = (str(entry.get("manager") or "unknown"), when)
    return best if best is not None else (None, None)


def reporter(managed_fields: Sequence[Mapping[str, Any]]) -> str:
    """The field manager that created the incident (kubectl, rotor-cli, a scanner's client)."""
    for entry in managed_fields:
        if entry.get("operation") == "Update" and entry.get("subresource"):
            continue
        if "f:spec" in (entry.get("fieldsV1") or {}):
            return str(entry.get("manager") or "unknown")
    return "unknown"
