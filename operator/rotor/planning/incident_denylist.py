"""Which values a LeakIncident may denylist, for whom, and how Rotor keeps the lists. Plain data.

A denylist refuses a value by its keyed digest wherever it applies, so it must identify one
credential and reach no further than the leak: by default it applies to the SecretSources of the
incident's namespace that read the leaked secret's backend location; only an incident in the
operator's own namespace (which tenants cannot write) denylists cluster-wide. Values too short or
too common to identify a credential are refused as entries (they would refuse unrelated secrets).

The lists are kept, as digests only, in Rotor's own Secret until their incident is resolved: deleting
the incident object does not lift them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# -- scope ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Where a denylist applies: sources of NAMESPACE reading WHERE (None: any)."""

    namespace: str | None
    where: str | None

    def covers(self, namespace: str, where: str | None) -> bool:
        return (self.namespace is None or self.namespace == namespace) and (self.where is None or self.where == where)

    def describe(self) -> str:
        if self.namespace is None:
            return "cluster-wide: every SecretSource in every namespace"
        return f"SecretSources of namespace {self.namespace} reading {self.where or 'any location'}"

    def to_json(self) -> dict[str, str | None]:
        return {"namespace": self.namespace, "where": self.where}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Scope:
        return cls(raw.get("namespace") or None, raw.get("where") or None)


EVERYWHERE = Scope(None, None)


def scope_for(namespace: str, where: str | None, operator_namespace: str) -> Scope:
    """The scope of an incident's denylist: cluster-wide only from the operator's own namespace."""
    if namespace == operator_namespace:
        return EVERYWHERE
    return Scope(namespace, where or None)


def applicable(lists: Iterable[tuple[Scope, frozenset[str]]], namespace: str, where: str | None) -> frozenset[str]:
    """The digests a source of NAMESPACE reading WHERE must refuse."""
    return frozenset().union(*(digests for scope, digests in lists if scope.covers(namespace, where)))


# -- which values may be entries ------------------------------------------------------------------------

MIN_LENGTH = 8
MIN_BITS = 24.0  # Shannon entropy of the value as a whole: 8 distinct characters
# Values that appear in many unrelated secrets: as entries they would refuse those too.
COMMON_VALUES = frozenset({
    "admin", "administrator", "changeme", "changeit", "default", "example", "guest", "letmein", "localhost",
    "mysql", "null", "none", "oracle", "password", "password1", "passw0rd", "postgres", "postgresql", "qwerty",
    "rabbitmq", "redis", "root", "secret", "superuser", "test", "true", "false", "user", "welcome", "yes", "no",
    "127.0.0.1", "0.0.0.0", "::1", "mongodb", "elastic", "kibana", "sa", "system", "manager", "public",
    "private", "master", "main", "production", "staging", "development", "username",
})
_PUBLIC_PREFIXES = ("-----BEGIN CERTIFICATE", "-----BEGIN PUBLIC KEY", "ssh-rsa ", "ssh-ed25519 ",
                    "ecdsa-sha2-")


def entropy_bits(value: str) -> float:
    """Shannon entropy of VALUE's characters times its length (a rough strength, in bits)."""
    if not value:
        return 0.0
    counts = Counter(value)
    total = len(value)
    per_char = -sum(c / total * math.log2(c / total) for c in counts.values())
    return per_char * total


def not_identifying(value: str) -> str | None:
    """Why VALUE cannot serve as a denylist entry (never quoting it), or None if it can."""
    stripped = value.strip()
    if len(stripped) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters"
    if stripped.lower() in COMMON_VALUES:
        return "a common value (a default user, password, host or word)"
    if stripped.startswith(_PUBLIC_PREFIXES):
        return "a public certificate or key, not a credential"
    if stripped.isdigit() and len(stripped) < 16:
        return "a number (a port, an id or a PIN)"
    if entropy_bits(stripped) < MIN_BITS:
        return "too little variety to identify one credential (low entropy)"
    return None


def screen(values: Mapping[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(keys whose values may be denylisted, [(key, why not)] for the others), by key name."""
    accepted: list[str] = []
    refused: list[tuple[str, str]] = []
    for key in sorted(values):
        why = not_identifying(values[key])
        if why is None:
            accepted.append(key)
        else:
            refused.append((key, why))
    return accepted, refused


def refused_message(refused: Iterable[tuple[str, str]]) -> str:
    """The status message for refused entries: keys and reasons, never values."""
    parts = [f"{key}: {why}" for key, why in refused]
    return ("not denylisted (it would refuse unrelated secrets holding the same value; rotate it): "
            + "; ".join(parts))


# -- Rotor's own record of the lists ---------------------------------------------------------------------

STORE_KEY = "denylists"  # the data key in the operator's state Secret
STORE_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One incident's denylist as Rotor keeps it: digests only."""

    uid: str
    incident: str  # namespace/name, for people reading the store
    scope: Scope
    digests: frozenset[str]
    since: str

    def to_json(self) -> dict[str, Any]:
        return {"incident": self.incident, "scope": self.scope.to_json(), "digests": sorted(self.digests),
                "since": self.since}


class StoreCorrupt(ValueError):
    """The stored lists cannot be read: never treated as empty (that would lift every list)."""


def encode_store(entries: Mapping[str, Entry]) -> bytes:
    body = {"version": STORE_VERSION, "entries": {uid: e.to_json() for uid, e in sorted(entries.items())}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def decode_store(raw: bytes | None) -> dict[str, Entry]:
    """The entries by incident UID; {} when nothing was stored yet. StoreCorrupt when unreadable."""
    if not raw:
        return {}
    try:
        body = json.loads(raw)
        entries = body["entries"]
        return {str(uid): Entry(str(uid), str(e["incident"]), Scope.from_json(e["scope"]),
                                frozenset(str(d) for d in e["digests"]), str(e.get("since") or ""))
                for uid, e in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise StoreCorrupt(f"the stored denylists are not readable ({type(err).__name__})") from None


def from_status(body: Mapping[str, Any], operator_namespace: str, since: str) -> Entry | None:
    """The denylist an unresolved incident's status holds (incidents from before Rotor kept its own
    record, and a replica taking over), scoped as contain would scope it; None when there is none."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    digests = frozenset(str(d) for d in status.get("denylist") or ())
    if not digests or spec.get("resolved") or status.get("phase") == "Resolved" or not meta.get("uid"):
        return None
    where = (status.get("blastRadius") or {}).get("backend")
    namespace = str(meta.get("namespace") or "")
    return Entry(str(meta["uid"]), f"{namespace}/{meta.get('name', '')}",
                 scope_for(namespace, where, operator_namespace), digests, since)


# -- was the HMAC key ever used? ------------------------------------------------------------------------

def key_use(kind: str, bodies: Iterable[Mapping[str, Any]]) -> str | None:
    """The first object whose status carries a digest made with the HMAC key (a SecretSource's
    dataHmac, a LeakIncident's denylist), as 'Kind namespace/name'; None when none does."""
    for body in bodies:
        status = body.get("status") or {}
        if status.get("dataHmac") or status.get("denylist"):
            meta = body.get("metadata") or {}
            return f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}"
    return None


def key_lost_message(namespace: str, secret: str, evidence: str) -> str:
    """Why Rotor will not start with a new key, and how to restore the old one."""
    return (f"the HMAC key Secret {namespace}/{secret} is missing, but a key was in use ({evidence} carries a "
            "digest made with it). Rotor does not create a new key: every denylist and digest would silently "
            f"stop matching. Restore the Secret from your backup (kubectl -n {namespace} apply -f "
            f"<backup of {secret}>, see docs/incident.md, 'Back up the HMAC key'); Rotor starts once it is back. "
            "To start over with a new key on purpose, set the operator setting hmac_key_allow_new: true")
