"""How a LeakIncident rotates and what it leaves behind: the rotation request, the emergency
RotationPolicy (when the secret has none), the tightened schedule, guardrails and recommendations.
Plain data in, plain data out.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from rotor.api import keys
from rotor.api.kinds import LEAK_INCIDENT, ROTATION_POLICY
from rotor.planning import times
from rotor.planning.incident import Credential

EMERGENCY_SUFFIX = "-emergency"


def emergency_name(incident: str) -> str:
    """The emergency RotationPolicy of INCIDENT (names stay within 253 characters)."""
    return f"{incident[:253 - len(EMERGENCY_SUFFIX)]}{EMERGENCY_SUFFIX}"


def is_emergency(policy: str) -> bool:
    return policy.endswith(EMERGENCY_SUFFIX)


def rotation_request(policy: str | None, *, incident: str, uid: str,
                     now: datetime.datetime) -> tuple[dict[str, Any], str]:
    """The status.rotation the incident persists before asking POLICY (None: a new emergency one) to
    rotate, and the timeline message. The rotate-now token is derived from the incident, so asking
    again changes nothing."""
    emergency = policy is None
    name = policy if policy is not None else emergency_name(incident)
    ref = {"policy": name, "emergency": emergency, "requestedAt": times.iso(now, millis=True),
           "token": f"leak-{uid[:8]}-{incident}"[:253]}
    return ref, f"{'emergency ' if emergency else ''}RotationPolicy {name} asked to rotate"


def emergency_policy(ref: Mapping[str, Any], *, incident: str, uid: str, source: str, leaked: Sequence[str],
                     window: str, identity: Mapping[str, Any] | None) -> dict[str, Any]:
    """A RotationPolicy that rotates the leaked property once (owned by the incident, removed after)."""
    spec: dict[str, Any] = {
        "secretSourceRef": {"name": source}, "schedule": {"interval": "8760h"}, "strategy": "overlap",
        "generator": {"type": "password", "length": 32, "key": (list(leaked) or ["password"])[0]},
        "overlap": {"window": window}, "verify": {"timeout": "5m"}, "deadline": "15m"}
    if identity is not None:
        spec["identity"] = dict(identity)
    return {"apiVersion": ROTATION_POLICY.api_version, "kind": ROTATION_POLICY.kind,
            "metadata": {"name": ref["policy"], "annotations": {keys.ROTATE_NOW: ref["token"]},
                         "labels": {keys.LEAK_INCIDENT_LABEL: incident[:63]},
                         "ownerReferences": [{"apiVersion": LEAK_INCIDENT.api_version, "kind": LEAK_INCIDENT.kind,
                                              "name": incident, "uid": uid}]},
            "spec": spec}


def rotate_now_patch(token: str) -> dict[str, Any]:
    """The patch asking a RotationPolicy to rotate now."""
    return {"metadata": {"annotations": {keys.ROTATE_NOW: token}}}


# -- prevent ----------------------------------------------------------------------------------------

def denylist_kept(digests: int, scope: str | None = None) -> str:
    return (f"denylist kept: {digests} digest(s) of the leaked value stay refused ({scope or 'no scope'}) until "
            "this incident is resolved")


def emergency_removed(policy: str) -> str:
    return f"emergency RotationPolicy {policy} removed after its rotation"


def not_tightened(requested: str) -> str:
    return f"rotation interval not tightened to {requested}: the secret has no RotationPolicy"


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


