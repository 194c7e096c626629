"""Who reported and who resolved a LeakIncident, as the API server authenticated them. Plain data.

Field-manager names are chosen by the client, so they are no proof of anything. Rotor's admission
webhook records the authenticated user (AdmissionReview userInfo.username) in an annotation, signed
with the operator's HMAC key and bound to the object (its namespace and name at creation, its UID
afterwards) and to the time of the change; whatever the client put there is overwritten. Rotor
believes only a signature it can verify; otherwise it says "unverified: <field manager>".
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from rotor.api import keys
from rotor.planning import times

WINDOW = datetime.timedelta(seconds=120)  # the signed time vs the change it records (clock skew included)
_DOMAIN = "rotor.dev/incident-actor/v1"


def _mac(key: bytes, action: str, namespace: str, name: str, generate_name: str, uid: str, user: str,
         at: str) -> str:
    message = json.dumps([_DOMAIN, action, namespace, name, generate_name, uid, user, at])
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def signed(key: bytes, action: str, meta: Mapping[str, Any], user: str, now: datetime.datetime) -> str:
    """The annotation value recording USER doing ACTION (reported, resolved) to the object META
    describes (at CREATE it has no UID yet: its name binds it)."""
    at = times.iso(now, millis=True)
    name, uid = str(meta.get("name") or ""), str(meta.get("uid") or "")
    mac = _mac(key, action, str(meta.get("namespace") or ""), name, str(meta.get("generateName") or ""), uid,
               user, at)
    return json.dumps({"user": user, "at": at, "name": name, "uid": uid, "mac": mac}, sort_keys=True)


def verified(key: bytes, raw: str | None, action: str, meta: Mapping[str, Any], *,
             changed_at: datetime.datetime | None = None) -> str | None:
    """The user RAW records for ACTION on the object META describes, if Rotor signed it for this very
    object and change: signed at creation (bound by name) within WINDOW of its creationTimestamp, or
    later (bound by UID) within WINDOW of CHANGED_AT, when the change was written. Else None."""
    if not raw:
        return None
    try:
        record = json.loads(raw)
        user, at, name, uid, mac = (str(record[k]) for k in ("user", "at", "name", "uid", "mac"))
        when = times.parse(at)
    except (ValueError, KeyError, TypeError):
        return None
    namespace, generate_name = str(meta.get("namespace") or ""), str(meta.get("generateName") or "")
    expected = _mac(key, action, namespace, name, generate_name, uid, user, at)
    if not hmac.compare_digest(expected, mac):
        return None
    current = str(meta.get("name") or "")
    if uid:
        bound, near = uid == str(meta.get("uid") or ""), changed_at
    else:
        bound = name == current if name else bool(generate_name) and current.startswith(generate_name)
        near = times.parse_optional(meta.get("creationTimestamp"))
    if not bound or near is None or abs(when - near) > WINDOW:
        return None
    return user


def admission_annotations(key: bytes, *, operation: str, body: Mapping[str, Any], old: Mapping[str, Any] | None,
                          user: str, now: datetime.datetime) -> dict[str, str | None]:
    """What the webhook sets (None: removes) so the actor annotations say only what Rotor recorded:
    at CREATE the reporter (and the resolver, if created resolved); at UPDATE the values they had,
    and a new resolver when spec.resolved turns true."""
    meta = body.get("metadata") or {}
    current = meta.get("annotations") or {}
    resolved = bool((body.get("spec") or {}).get("resolved"))
    if operation == "CREATE" or old is None:
        wanted: dict[str, str | None] = {
            keys.REPORTED_BY: signed(key, "reported", {**meta, "uid": ""}, user, now),
            keys.RESOLVED_BY: signed(key, "resolved", {**meta, "uid": ""}, user, now) if resolved else None}
    else:
        before = (old.get("metadata") or {}).get("annotations") or {}
        was_resolved = bool((old.get("spec") or {}).get("resolved"))
        resolver = before.get(keys.RESOLVED_BY)
        if resolved and not was_resolved:
            resolver = signed(key, "resolved", meta, user, now)
        elif not resolved:
            resolver = None
        wanted = {keys.REPORTED_BY: before.get(keys.REPORTED_BY), keys.RESOLVED_BY: resolver}
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def unverified(manager: str | None) -> str:
    return f"unverified: {manager or 'unknown'}"


def reporter(key: bytes, meta: Mapping[str, Any], manager: str) -> str:
    """Who reported the incident: the authenticated user the webhook recorded, else the field manager,
    marked unverified."""
    user = verified(key, (meta.get("annotations") or {}).get(keys.REPORTED_BY), "reported", meta)
    return user if user is not None else unverified(manager)


def resolver(key: bytes, meta: Mapping[str, Any], manager: str | None, when: str | None) -> str:
    """Who set spec.resolved (the field manager's write at WHEN): the recorded user, else unverified."""
    user = verified(key, (meta.get("annotations") or {}).get(keys.RESOLVED_BY), "resolved", meta,
                    changed_at=times.parse_optional(when))
    return user if user is not None else unverified(manager)
