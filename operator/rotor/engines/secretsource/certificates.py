"""The I/O of a SecretSource with spec.vault.pki: issue a certificate as the source's identity.

What is due and what the Secret holds is planned in planning.certificates; the worker writes the
Secret through the same plan_sync path as any other source (the certificate's serial is its version).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotor.api import keys
from rotor.api.capabilities import Capability
from rotor.api.common import parse_duration
from rotor.api.secretsource import PkiCertificate, SecretSourceSpec
from rotor.backends.protocols import Backend, BackendError, CertificateIssuer, InvalidSpec, Unavailable
from rotor.planning import times
from rotor.planning.certificates import (
    LEAK_REQUEST,
    TTL_FIELD,
    capped,
    certificate_status,
    refused_field,
    renewal_time,
    tls_data,
)
from rotor.planning.hashing import value_hmac
from rotor.planning.sync import Fetched, ObservedSecret


def intact(observed: ObservedSecret | None, status_hmac: str | None, written: dict[str, str] | None) -> bool:
    """Whether the target Secret (the view's summary) still holds the certificate Rotor wrote: Rotor's
    digest annotation, and the keyed digests of the values as written (WRITTEN: known since this
    process wrote them; after a restart the annotation alone tells)."""
    if observed is None or not status_hmac or observed.annotations.get(keys.DATA_HMAC) != status_hmac:
        return False
    if written is None or observed.digests is None:
        return True
    return all(observed.digests.get(k) == v for k, v in written.items())


def digests(hmac_key: bytes, values: Mapping[str, bytes]) -> dict[str, str]:
    return {k: value_hmac(hmac_key, v) for k, v in values.items()}


def pki_of(spec: SecretSourceSpec) -> PkiCertificate | None:
    return spec.vault.pki if spec.provider == "vault" and spec.vault is not None else None


async def issue(backend: Backend | None, namespace: str, spec: SecretSourceSpec, pki: PkiCertificate,
                u: float, rotation: str | None = None) -> tuple[Fetched, dict[str, str]]:
    """A new certificate as the Secret's keys (version: its serial) and status.certificate (U in [0, 1):
    the renewal's jitter; ROTATION: the RotationPolicy rotation it is for, or the last one that asked)."""
    if backend is None or Capability.CERTIFICATES not in backend.capabilities:
        raise InvalidSpec(f"spec.vault.pki: provider {spec.provider!r} cannot issue certificates")
    handle = backend.bind(namespace, spec)
    if not isinstance(handle, CertificateIssuer):
        raise InvalidSpec(f"spec.vault.pki: provider {spec.provider!r} cannot issue certificates")
    ttl = int(parse_duration(pki.ttl).total_seconds())
    issued = times.now()
    try:
        cert = await handle.issue_certificate(pki.mount, pki.role, pki.common_name, pki.alt_names, pki.ip_sans,
                                              ttl, pki.key_type, pki.key_bits)
    except InvalidSpec as err:  # the role refused: say which field to fix
        raise InvalidSpec(f"{refused_field(err.message)}: {err.message}") from None
    except BackendError:
        raise
    except Exception as exc:  # a backend bug: its message may quote a value
        raise Unavailable(f"issuing a certificate failed with {type(exc).__name__} (message withheld)") from None
    if capped(issued, cert.not_after, parse_duration(pki.ttl)):  # Vault capped it at the role's max TTL
        try:  # not delivered: it goes on the CRL (unless the identity may not revoke: then it just expires)
            await handle.revoke_certificate(pki.mount, cert.serial)
        except BackendError:
            pass
        lasted = times.iso(cert.not_after)
        raise InvalidSpec(f"{TTL_FIELD}: {pki.ttl} is longer than PKI role {pki.role} allows (Vault issued one valid "
                          f"until {lasted} only): ask for the role's max TTL or less")
    renew_at = renewal_time(issued, cert.not_after, pki.renew_fraction, u)
    values = tls_data(cert.certificate, cert.ca_chain, cert.private_key, cert.issuing_ca)
    return Fetched(values, cert.serial), certificate_status(cert.serial, cert.not_after, renew_at, rotation)


def rotation_of(requested: str | None, status: Mapping[str, Any]) -> str | None:
    """The rotation a certificate issued now records: the RotationPolicy rotation asking (REQUESTED), else
    the last one that did (a source a RotationPolicy renews stays so, whatever else made it issue, a
    LeakIncident's request included)."""
    if requested and not requested.startswith(LEAK_REQUEST):
        return requested
    return (status.get("certificate") or {}).get("rotation") or None
