"""When a SecretSource with spec.vault.pki issues a certificate, and what it writes: plain data in and out.

A certificate is issued once, then again at renewAt (a fraction of its lifetime, jittered a little
earlier so sources issued together do not renew together), or at once when the spec changed, the last
attempt failed, or the Secret no longer holds what Rotor wrote (its key cannot be read back to restore).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rotor.api import keys
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.planning import times
from rotor.planning.conditions import get_condition

JITTER = 0.05  # renewal comes up to this fraction of the lifetime earlier
MIN_WAIT = 1.0  # seconds: the shortest wait before a renewal (a TTL of seconds must not loop)
TTL_FIELD = "spec.vault.pki.ttl"
TTL_RECHECK = 3600.0  # seconds: a TTL the role caps is tried again this often (until the spec changes)
LEAK_REQUEST = "leak-"  # request ids of LeakIncidents: they re-issue once, and do not make a policy renew
LEAD = 0.1  # a RotationPolicy renews this fraction of the time from renewAt to notAfter before renewAt
MAX_LEAD = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertificatePlan:
    due: bool
    why: str  # for the log: why a certificate is issued now, or that none is
    wait: float = 0.0  # seconds until renewAt when not due


def plan_certificate(status: Mapping[str, Any], *, generation: int, secret_intact: bool,
                     now: datetime.datetime, requested: str | None = None) -> CertificatePlan:
    """Whether to issue now, from STATUS (as last written) and whether the target Secret still holds
    what Rotor wrote (SECRET_INTACT). REQUESTED: the rotation id a RotationPolicy (strategy certificate)
    asks a certificate for; once one did (status.certificate.rotation), the policy renews at renewAt
    and the source only at its backstop."""
    certificate = status.get("certificate") or {}
    renew_at = times.parse_optional(certificate.get("renewAt"))
    ready = get_condition(status.get("conditions"), keys.READY)
    if ready is not None and ready.get("status") == "False" and str(ready.get("message", "")).startswith(TTL_FIELD) \
            and status.get("observedGeneration") == generation:
        # The role caps the TTL: every attempt would issue a certificate only to discard it. Until the spec
        # changes (a generation), try again only now and then (the role's max TTL may be raised).
        return CertificatePlan(False, "TTL over the role's max", TTL_RECHECK)
    if renew_at is None or not certificate.get("serial"):
        return CertificatePlan(True, "no certificate issued yet")
    if requested and requested != certificate.get("rotation"):
        return CertificatePlan(True, f"RotationPolicy rotation {requested} asks for a new one")
    if status.get("observedGeneration") != generation:
        return CertificatePlan(True, "the spec changed")
    if ready is None or ready.get("status") != "True":
        return CertificatePlan(True, "the last attempt failed")
    if not secret_intact:
        return CertificatePlan(True, "the Secret no longer holds the certificate Rotor wrote")
    due = own_renewal(certificate) or renew_at
    if now >= due:
        return CertificatePlan(True, "renewal due" if due == renew_at else "renewal overdue: its RotationPolicy "
                               "did not renew it (backstop)")
    return CertificatePlan(False, "not due", until_renewal(certificate, now))


def capped(issued: datetime.datetime, not_after: datetime.datetime, ttl: datetime.timedelta) -> bool:
    """Whether a certificate asked for TTL at ISSUED (Rotor's clock) ends clearly before that: Vault caps
    a TTL over the PKI role's max_ttl without an error. Slack: 5 % of TTL, at least 10 s (clocks differ)."""
    return not_after < issued + ttl - max(datetime.timedelta(seconds=10), ttl * 0.05)


def own_renewal(certificate: Mapping[str, Any]) -> datetime.datetime | None:
    """When the source renews on its own: renewAt, or, when a RotationPolicy renews it (rotation set),
    the backstop halfway from renewAt to notAfter (the policy renews at renewAt; this is for a policy
    that failed or was deleted). None when status.certificate lacks the times."""
    renew_at = times.parse_optional(certificate.get("renewAt"))
    not_after = times.parse_optional(certificate.get("notAfter"))
    if renew_at is None or not certificate.get("rotation") or not_after is None:
        return renew_at
    return renew_at + max(datetime.timedelta(0), not_after - renew_at) / 2


def until_renewal(certificate: Mapping[str, Any], now: datetime.datetime) -> float:
    """Seconds from NOW until the source's own renewal (own_renewal; at least MIN_WAIT)."""
    renew_at = own_renewal(certificate)
    return MIN_WAIT if renew_at is None else max(MIN_WAIT, (renew_at - now).total_seconds())


def policy_due(certificate: Mapping[str, Any]) -> datetime.datetime | None:
    """When a RotationPolicy (strategy certificate) renews the certificate in status.certificate: LEAD of
    its remaining time before renewAt, so that the policy, not the source's own timer, renews the first
    one it governs. None before the first certificate."""
    renew_at = times.parse_optional(certificate.get("renewAt"))
    not_after = times.parse_optional(certificate.get("notAfter"))
    if renew_at is None or not_after is None:
        return None
    return renew_at - min(MAX_LEAD, max(datetime.timedelta(0), not_after - renew_at) * LEAD)


def certificate_values(certificate: Mapping[str, Any]) -> dict[str, str]:
    """A certificate as a RotationPolicy's status records it (rotation.old/new, active): the serial (also
    as the version the SecretSource syncs), notAfter and renewAt. Never key material."""
    serial = str(certificate.get("serial") or "")
    values = {"version": serial, "serial": serial}
    for name in ("notAfter", "renewAt"):
        if certificate.get(name):
            values[name] = str(certificate[name])
    return values


def certificate_source_problem(policy: RotationPolicySpec, name: str, source: SecretSourceSpec) -> str | None:
    """Why a RotationPolicy cannot renew the certificate of SecretSource NAME (naming the field), or None."""
    issues = source.vault is not None and source.vault.pki is not None
    if policy.strategy == "certificate" and not issues:
        return (f"spec.secretSourceRef: SecretSource {name} does not issue certificates (it has no spec.vault.pki); "
                "strategy certificate renews those")
    return None


def expiry_samples(certificate: Mapping[str, Any], now: datetime.datetime) -> tuple[float, float] | None:
    """(seconds until notAfter, seconds the renewal is overdue: past renewAt, 0 before) of
    status.certificate, or None without one."""
    renew_at = times.parse_optional(certificate.get("renewAt"))
    not_after = times.parse_optional(certificate.get("notAfter"))
    if renew_at is None or not_after is None:
        return None
    return (not_after - now).total_seconds(), max(0.0, (now - renew_at).total_seconds())


def renewal_time(issued: datetime.datetime, not_after: datetime.datetime, fraction: float,
                 u: float) -> datetime.datetime:
    """When to renew a certificate valid from ISSUED to NOT_AFTER: FRACTION of its lifetime, minus up
    to JITTER of it (U in [0, 1))."""
    lifetime = max(0.0, (not_after - issued).total_seconds())
    seconds = lifetime * max(0.0, fraction - JITTER * u)
    return issued + datetime.timedelta(seconds=max(MIN_WAIT, seconds))


def certificate_status(serial: str, not_after: datetime.datetime, renew_at: datetime.datetime,
                       rotation: str | None = None) -> dict[str, str]:
    """status.certificate: numbers and times, never key material (ROTATION: the RotationPolicy rotation
    that asked for it, or the last that did)."""
    status = {"serial": serial, "notAfter": times.iso(not_after), "renewAt": times.iso(renew_at)}
    return {**status, "rotation": rotation} if rotation else status


def tls_data(leaf: str, chain: Sequence[str], private_key: str, ca: str) -> dict[str, bytes]:
    """The kubernetes.io/tls keys: tls.crt (the leaf, then its chain), tls.key, ca.crt (the chain's last
    certificate: the root a client trusts; the issuing CA when there is no chain)."""
    pems = [leaf, *(pem for pem in chain if pem.strip() != leaf.strip())]
    bundle = "\n".join(pem.strip() for pem in pems) + "\n"
    root = chain[-1] if chain else ca
    return {"tls.crt": bundle.encode(), "tls.key": (private_key.strip() + "\n").encode(),
            "ca.crt": (root.strip() + "\n").encode()}


# Words of a PKI engine's refusals (Vault's 400s) -> the spec field they are about, first match wins.
_REFUSALS = (
    ("unknown role", "spec.vault.pki.role"),
    ("no pki engine", "spec.vault.pki.mount"),
    ("common name", "spec.vault.pki.commonName"),
    ("ip subject alternative name", "spec.vault.pki.ipSans"),
    ("ip san", "spec.vault.pki.ipSans"),
    ("alternate name", "spec.vault.pki.altNames"),
    ("alternative name", "spec.vault.pki.altNames"),
    ("ttl", TTL_FIELD),
    ("not_after", TTL_FIELD),
    ("key_bits", "spec.vault.pki.keyBits"),
    ("key bits", "spec.vault.pki.keyBits"),
    ("key type", "spec.vault.pki.keyType"),
    ("key_type", "spec.vault.pki.keyType"),
)


def refused_field(message: str) -> str:
    """The spec field a PKI engine's refusal MESSAGE is about (spec.vault.pki when none is recognised)."""
    lowered = message.lower()
    return next((name for words, name in _REFUSALS if words in lowered), "spec.vault.pki")
