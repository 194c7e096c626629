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
from rotor.planning import times
from rotor.planning.conditions import get_condition

JITTER = 0.05  # renewal comes up to this fraction of the lifetime earlier
MIN_WAIT = 1.0  # seconds: the shortest wait before a renewal (a TTL of seconds must not loop)


@dataclass(frozen=True)
class CertificatePlan:
    due: bool
    why: str  # for the log: why a certificate is issued now, or that none is
    wait: float = 0.0  # seconds until renewAt when not due


def plan_certificate(status: Mapping[str, Any], *, generation: int, secret_intact: bool,
                     now: datetime.datetime) -> CertificatePlan:
    """Whether to issue now, from STATUS (as last written) and whether the target Secret still holds
    what Rotor wrote (SECRET_INTACT)."""
    certificate = status.get("certificate") or {}
    renew_at = times.parse_optional(certificate.get("renewAt"))
    ready = get_condition(status.get("conditions"), keys.READY)
    if renew_at is None or not certificate.get("serial"):
        return CertificatePlan(True, "no certificate issued yet")
    if status.get("observedGeneration") != generation:
        return CertificatePlan(True, "the spec changed")
    if ready is None or ready.get("status") != "True":
        return CertificatePlan(True, "the last attempt failed")
    if not secret_intact:
        return CertificatePlan(True, "the Secret no longer holds the certificate Rotor wrote")
    if now >= renew_at:
        return CertificatePlan(True, "renewal due")
    return CertificatePlan(False, "not due", until_renewal(certificate, now))


def until_renewal(certificate: Mapping[str, Any], now: datetime.datetime) -> float:
    """Seconds from NOW until status.certificate's renewAt (at least MIN_WAIT)."""
    renew_at = times.parse_optional(certificate.get("renewAt"))
    return MIN_WAIT if renew_at is None else max(MIN_WAIT, (renew_at - now).total_seconds())


def renewal_time(issued: datetime.datetime, not_after: datetime.datetime, fraction: float,
                 u: float) -> datetime.datetime:
    """When to renew a certificate valid from ISSUED to NOT_AFTER: FRACTION of its lifetime, minus up
    to JITTER of it (U in [0, 1))."""
    lifetime = max(0.0, (not_after - issued).total_seconds())
    seconds = lifetime * max(0.0, fraction - JITTER * u)
    return issued + datetime.timedelta(seconds=max(MIN_WAIT, seconds))


def certificate_status(serial: str, not_after: datetime.datetime, renew_at: datetime.datetime) -> dict[str, str]:
    """status.certificate: numbers and times, never key material."""
    return {"serial": serial, "notAfter": times.iso(not_after), "renewAt": times.iso(renew_at)}


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
    ("ttl", "spec.vault.pki.ttl"),
    ("not_after", "spec.vault.pki.ttl"),
    ("key_bits", "spec.vault.pki.keyBits"),
    ("key bits", "spec.vault.pki.keyBits"),
    ("key type", "spec.vault.pki.keyType"),
    ("key_type", "spec.vault.pki.keyType"),
)


def refused_field(message: str) -> str:
    """The spec field a PKI engine's refusal MESSAGE is about (spec.vault.pki when none is recognised)."""
    lowered = message.lower()
    return next((name for words, name in _REFUSALS if words in lowered), "spec.vault.pki")
