"""The leak runbook as pure functions over plain data.

    Open -> Contained -> Identified -> Rotated -> Revoked -> Audited -> Prevented -> (spec.resolved) Resolved
                                   \\-> Revoked -> Rotated -/        (order immediate)

The engine (rotor.engines.incident.worker) persists the step it is about to take before acting and the phase's
timestamp after, so a restarted operator re-enters an unfinished step (each step's action checks
whether it already happened) and never repeats a finished one. Everything here takes names, versions,
digests and timestamps; values never reach this module except as HMAC digests.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rotor.planning.reload import pod_template

Step = Literal["contain", "identify", "rotate", "revoke", "audit", "prevent"]
Order = Literal["immediate", "afterRotation"]
PHASE_OF: dict[Step, str] = {"contain": "Contained", "identify": "Identified", "rotate": "Rotated",
                             "revoke": "Revoked", "audit": "Audited", "prevent": "Prevented"}
STAMP_OF: dict[Step, str] = {"contain": "contained", "identify": "identified", "rotate": "rotated",
                             "revoke": "revoked", "audit": "audited", "prevent": "prevented"}
FINISHED = frozenset({"Prevented", "Resolved"})
Via = Literal["env", "envFrom", "volume", "projected"]
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


# -- blast radius -----------------------------------------------------------------------------------

def secret_uses(pod_spec: Mapping[str, Any], secret: str) -> list[Via]:
    """How a pod spec reads SECRET: env (secretKeyRef), envFrom, a secret volume, a projected volume."""
    found: set[Via] = set()
    for container in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or []),
                      *(pod_spec.get("ephemeralContainers") or [])]:
        for env in container.get("env") or []:
            if ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret:
                found.add("env")
        for env_from in container.get("envFrom") or []:
            if (env_from.get("secretRef") or {}).get("name") == secret:
                found.add("envFrom")
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") == secret:
            found.add("volume")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name") == secret:
                found.add("projected")
    order: tuple[Via, ...] = ("env", "envFrom", "volume", "projected")
    return [v for v in order if v in found]


def consumers(secret: str, objects: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every workload (Deployment, StatefulSet, DaemonSet, Job, CronJob) and Pod whose pods read SECRET
    (same namespace: a pod can only name Secrets of its own), sorted by kind and name."""
    out: list[dict[str, Any]] = []
    for kind, body in objects:
        meta = body.get("metadata") or {}
        spec = (body.get("spec") or {}) if kind == "Pod" else (pod_template(kind, body).get("spec") or {})
        via = secret_uses(spec, secret)
        if not via:
            continue
        entry: dict[str, Any] = {"kind": kind, "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                                 "serviceAccount": spec.get("serviceAccountName") or "default", "via": list(via)}
        owner = next((r for r in meta.get("ownerReferences") or () if r.get("controller")), None)
        if owner:
            entry["owner"] = f"{owner.get('kind')}/{owner.get('name')}"
        out.append(entry)
    return sorted(out, key=lambda c: (c["kind"], c["name"]))


def readers(found: Sequence[Mapping[str, Any]], source_identity: tuple[str, str] | None) -> tuple[list[str], list[str]]:
    """(namespaces, namespace/ServiceAccount) of everything that reads the secret, the source's own
    backend identity included."""
    accounts = {f"{c['namespace']}/{c['serviceAccount']}" for c in found}
    namespaces = {str(c["namespace"]) for c in found}
    if source_identity is not None:
        accounts.add(f"{source_identity[0]}/{source_identity[1]}")
        namespaces.add(source_identity[0])
    return sorted(namespaces), sorted(accounts)


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
    return parse_time(text).replace(microsecond=0).isoformat()


# -- audit ------------------------------------------------------------------------------------------

def parse_time(text: str) -> datetime.datetime:
    """RFC 3339 with any fraction (Vault writes nanoseconds; Python takes microseconds)."""
    head, _, rest = text.replace("Z", "+00:00").partition(".")
    if not rest:
        return datetime.datetime.fromisoformat(head).astimezone(datetime.UTC)
    digits = re.match(r"[0-9]*", rest)
    fraction = digits.group(0) if digits else ""
    zone = rest[len(fraction):] or "+00:00"
    return datetime.datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}{zone}").astimezone(datetime.UTC)


def iso(moment: datetime.datetime) -> str:
    """Millisecond RFC 3339 in UTC: incident times are compared at sub-second scale."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- prevent ----------------------------------------------------------------------------------------

def tightened_schedule(schedule: Mapping[str, Any], overlap_window: float, requested: str,
                       requested_seconds: float, current_seconds: float | None) -> tuple[dict[str, Any] | None, str]:
    """The schedule patch that tightens rotation to REQUESTED, or None with the reason it is not applied."""
    if requested_seconds <= overlap_window:
        return None, (f"rotation interval not tightened: {requested} is not longer than the overlap window "
                      f"({overlap_window:.0f}s)")
    if schedule.get("interval") and current_seconds is not None and current_seconds <= requested_seconds:
        return None, f"rotation interval kept at {schedule['interval']} (already at most {requested})"
    before = schedule.get("interval") or f"cron {schedule.get('cron')!r}"
    return {"interval": requested, "cron": None}, f"rotation interval tightened: {before} -> {requested}"


_WHERE = {
    "ci-logs": "enable secret masking in the pipeline named by the exposure ({ref}) and purge the affected "
               "build logs and artifacts",
    "git": "purge the value from the repository history ({ref}) and enable push protection / secret scanning",
    "image": "delete or rebuild the image ({ref}); never bake secrets into images, mount them at run time",
    "log": "redact values in the application's logging where the exposure happened ({ref})",
    "chat": "delete the message ({ref}) and remind the team to share secrets only through the secret store",
    "other": "close the exposure channel ({ref})",
}


def recommendations(*, where: str, reference: str, credential: Credential, has_policy: bool, database: bool,
                    env_consumers: Sequence[str], revocation_confirmed: bool | None,
                    unexpected_readers: Sequence[str], unrotated: Sequence[str]) -> list[str]:
    """What a person should still do, most important first."""
    out = [_WHERE.get(where, _WHERE["other"]).format(ref=reference or "no reference given")]
    if revocation_confirmed is False:
        out.insert(0, "the old credential is still accepted: change it where it is issued (database, provider)")
    if unexpected_readers:
        out.append("investigate reads of the secret by identities outside its consumers: "
                   + ", ".join(unexpected_readers))
    if unrotated:
        out.append("these properties look like credentials and were not rotated: " + ", ".join(unrotated)
                   + "; rotate them at their issuer")
    if database and credential.kind != "dynamic":
        out.append("move this secret to dynamic credentials (RotationPolicy strategy dynamic): "
                   "a leaked lease expires on its own and is revoked alone")
    if not has_policy:
        out.append("add a RotationPolicy for this secret so it rotates on a schedule and future incidents "
                   "rotate with its settings")
    if env_consumers:
        out.append("prefer volume mounts over environment variables for " + ", ".join(env_consumers)
                   + " (environment variables reach child processes and crash reports)")
    return out


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
