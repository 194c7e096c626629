"""What Identify and Audit say about a leaked certificate key or Transit key. Plain data in and out.

A certificate's blast radius is the workloads mounting its kubernetes.io/tls Secret; its audit is who
issued from its PKI role and who fetched it by serial. A Transit key is used in place: its blast radius
is the workloads consuming the delivered Secret only when the key is exported; its audit is who used,
exported or backed it up. Names, serials, key versions and counts only: never key material.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rotor.planning import times

SHOWN = 10  # names a timeline message lists before "and N more" (an entry holds 1024 characters)


def requester(row: Mapping[str, Any]) -> str:
    """Who made an audited request: the Kubernetes identity, else the name Vault gives the token."""
    return str(row.get("serviceAccount") or row.get("displayName") or "unknown")


def listing(names: Sequence[str]) -> str:
    """NAMES joined, the first SHOWN of them ("none" when empty)."""
    if not names:
        return "none"
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def by_requester(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """One "who (action count, ...)" per requester, sorted: e.g. "team/app (sign 2, encrypt 1)"."""
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(requester(row), Counter())[str(row.get("operation") or "?")] += 1
    return [f"{who} ({', '.join(f'{op} {n}' for op, n in sorted(ops.items()))})" for who, ops in sorted(counts.items())]


def key_versions(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """The Transit key versions the requests used, where the log said."""
    return sorted({int(r["keyVersion"]) for r in rows if isinstance(r.get("keyVersion"), int)})


def consumer_names(found: Iterable[Mapping[str, Any]]) -> list[str]:
    return [f"{c['kind']}/{c['name']}" for c in found]


# -- identify ---------------------------------------------------------------------------------------------

def certificate_identified(*, serial: str, pki: str, target: str, found: Sequence[Mapping[str, Any]],
                           order: str, why: str) -> str:
    """The timeline's Identified message for a certificate: who mounts its Secret, and the role to audit."""
    return (f"certificate {serial or '?'} (PKI role {pki}): {len(found)} workload(s) mount its Secret {target}: "
            f"{listing(consumer_names(found))}; who issued from {pki} is in the audit step; order {order} ({why})")


def key_identified(*, key: str, version: str, exported: bool, delivered: Sequence[str], target: str,
                   found: Sequence[Mapping[str, Any]], order: str, why: str) -> str:
    """The timeline's Identified message for a Transit key: an exported key reaches the workloads reading
    its Secret (DELIVERED: the properties holding exposed versions); a key used in place reaches only
    those allowed to use it in Vault (the audit step)."""
    head = f"Transit key {key} version {version}"
    if exported:
        held = f" (exposed material in {listing(delivered)})" if delivered else ""
        reach = (f"exported to Secret {target}{held}: {len(found)} consumer(s): {listing(consumer_names(found))}")
    else:
        reach = "used in place, no material delivered: no workload holds it; its users are in the audit step"
    return f"{head} {reach}; order {order} ({why})"


def key_window_start(*, exposed: int, latest: int, latest_created: datetime.datetime | None,
                     detected: str) -> str:
    """When the exposed key version came to exist: known when it is the latest (Vault gives the latest's
    creation time), else the detection time."""
    if exposed == latest and latest_created is not None:
        return times.iso(latest_created, millis=True)
    return detected


# -- audit ------------------------------------------------------------------------------------------------

def certificate_subject(*, mount: str, role: str, serial: str) -> str:
    return f"issuances from {mount}/issue/{role} (and sign) and fetches of {mount}/cert/{serial or '?'}"


def key_subject(*, mount: str, key: str) -> str:
    return f"uses, exports and backups of Transit key {mount}/{key}"


def audited(note: str, rows: Sequence[Mapping[str, Any]], *, transit: bool) -> str:
    """The timeline's Audited message: the note, who did what how often, and (a key) which versions."""
    parts = [note, f"by {listing(by_requester(rows))}"]
    if transit:
        versions = key_versions(rows)
        parts.append(f"key version(s) used: {', '.join(map(str, versions)) if versions else 'not in the log'}")
    denied = sum(1 for r in rows if r.get("denied"))
    if denied:
        parts.append(f"{denied} denied")
    return "; ".join(parts)
