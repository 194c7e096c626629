"""A LeakIncident's blast radius and audit findings, as status dicts built from plain data.

Who reads the exposed Secret comes from the one pod-spec walker (rotor.planning.podspec), so the
incident counts every way a pod names a Secret, imagePullSecrets included, exactly as the inventory does.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rotor.planning import podspec, times


def consumers(secret: str, objects: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every workload (podspec.WORKLOAD_KINDS) and Pod whose pods read SECRET (same namespace: a pod can
    only name Secrets of its own), sorted by kind and name."""
    out: list[dict[str, Any]] = []
    for kind, body in objects:
        meta = body.get("metadata") or {}
        spec = podspec.pod_spec(kind, body)
        via = podspec.secret_uses(spec, secret)
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


def env_consumers(found: Iterable[Mapping[str, Any]]) -> list[str]:
    """kind/name of the consumers that read the secret as environment variables."""
    return [f"{c['kind']}/{c['name']}" for c in found if set(c.get("via") or ()) & {"env", "envFrom"}]


def source_identity(namespace: str, service_account: str, role: str | None) -> str:
    """Who the SecretSource reads the backend as, for status."""
    return f"{namespace}/{service_account}" + (f" (Vault role {role})" if role else "")


# -- the blastRadius status field, step by step ---------------------------------------------------------

def contained(*, where: str, versions: Sequence[str], keys: Sequence[str], namespace: str,
              target: str) -> dict[str, Any]:
    """What containment knows: where the secret lives, the exposed version(s) and properties, the Secret."""
    return {"backend": where, "versions": list(versions), "keys": list(keys), "targetSecret": f"{namespace}/{target}"}


def identified(radius: Mapping[str, Any], *, found: list[dict[str, Any]], namespaces: list[str], accounts: list[str],
               leases: list[str], static_role: str | None, identity: str, policy: str | None,
               window_start: str) -> dict[str, Any]:
    """Containment's radius with the readers, the leases and roles involved, and the exposure window's start."""
    return {**radius, "consumers": found, "namespaces": namespaces, "serviceAccounts": accounts, "leases": leases,
            "staticRole": static_role, "sourceIdentity": identity, "rotationPolicy": policy,
            "exposureWindow": {"start": window_start, "end": None}}


def revoked(radius: Mapping[str, Any], end: str) -> dict[str, Any]:
    """The radius with the exposure window closed at END (revocation)."""
    return {**radius, "exposureWindow": {**(radius.get("exposureWindow") or {}), "end": end}}


def exposure_window(status: Mapping[str, Any], now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """The window whose reads the audit lists: from the exposed version's creation (else detection) to
    revocation (else now)."""
    window = (status.get("blastRadius") or {}).get("exposureWindow") or {}
    start = times.parse(window.get("start") or status["timestamps"]["detected"])
    end = times.parse(window["end"]) if window.get("end") else now
    return start, end


# -- audit ------------------------------------------------------------------------------------------------

def no_audit_note(where: str, connection: str | None) -> str:
    """Why no reads are listed: the backend has no audit trail configured."""
    if connection is not None:
        return (f"no audit log configured for Vault connection {connection!r} (operator setting "
                "vault_connections.<name>.audit_log_file): reads not listed")
    return f"no audit trail for {where}: reads not listed"


def audit_note(*, total: int, listed: int, subject: str, start: datetime.datetime, end: datetime.datetime,
               found_in: str, counted: str = "read(s) of") -> str:
    """Where the reads (COUNTED: "request(s):" for a certificate or a key) came from, and how many."""
    return (f"{total} {counted} {subject} between {times.iso(start, millis=True)} and "
            f"{times.iso(end, millis=True)} in {found_in}{' (first 100 listed)' if total > listed else ''}")


def audit_readers(reads: Iterable[Mapping[str, Any]]) -> list[str]:
    """The identities that read the secret, sorted."""
    return sorted({str(r["serviceAccount"]) for r in reads if r.get("serviceAccount")})


def unexpected_readers(reads: Iterable[Mapping[str, Any]], radius: Mapping[str, Any], actor: str) -> list[str]:
    """Identities that read the secret but are neither a consumer nor the identity Rotor acted as."""
    expected = {*(radius.get("serviceAccounts") or ()), actor}
    return [r for r in audit_readers(reads) if r not in expected]
