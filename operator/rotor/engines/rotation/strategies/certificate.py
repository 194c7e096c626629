"""Certificates: the certificate of a SecretSource with spec.vault.pki, renewed through the phases.

The SecretSource stays the one issuer and the one writer of its kubernetes.io/tls Secret (a private key
never leaves it but into that Secret). Publishing asks it, through the CertificateRequests port, for a
certificate for this rotation; it issues one and records the rotation's id with the serial in its
status (status.certificate.rotation). Propagating waits for the Secret to hold that serial (the
source's syncedVersion), Verifying for readers to roll, Overlapping keeps the old certificate valid,
and Revoking puts the old serial on the CRL (spec.certificate.revokeAfterOverlap).

Crash safety: a second Publishing of the same rotation finds the source's certificate marked with its
id and adopts it: one certificate per rotation, however often the operator dies around it. Revoking a
serial twice is a no-op for Vault. A rollback cannot restore the old certificate (its key was never
kept), so it revokes nothing: the old certificate stays valid until it expires, the new one stays in
the Secret, and the rotation ends RolledBack (Ready=False, saying why).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any

from rotor.api import keys
from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.backends.protocols import CertificateIssuer, InvalidSpec, SecretHandle, Unavailable
from rotor.engines.ports import CertificateRequests, Sources, SourceView
from rotor.engines.rotation.faults import fault_point
from rotor.engines.rotation.strategies.base import Clock, KvStrategy, Values, unable
from rotor.planning.certificates import certificate_values, policy_due
from rotor.planning.conditions import get_condition

PUBLISH_WAIT = 15.0  # seconds Publishing waits for the source's new certificate before trying again
POLL = 0.2


class Certificates(KvStrategy):
    """Registered next to the KV strategies (strategy_class); it overrides every step and writes no KV
    version. The worker attaches the SecretSource engine (attach) before any step."""

    def __init__(self, spec: RotationPolicySpec, handle: SecretHandle, clock: Clock) -> None:
        self.spec, self.clock = spec, clock
        if not isinstance(handle, CertificateIssuer):
            raise unable(handle, "issue or revoke certificates")
        self.issuer: CertificateIssuer = handle
        self.sources: Sources | None = None
        self.namespace = self.name = ""

    def attach(self, sources: Sources, namespace: str, name: str) -> None:
        """The SecretSource engine and the source (NAMESPACE/NAME) whose certificate this renews."""
        self.sources, self.namespace, self.name = sources, namespace, name

    @staticmethod
    def observed(source_status: Mapping[str, Any]) -> dict[str, str]:
        return certificate_values(source_status.get("certificate") or {})

    @staticmethod
    def due(spec: RotationPolicySpec, active: Mapping[str, str], now: datetime.datetime) -> datetime.datetime | None:
        """At the source's renewAt (a little before: planning.certificates.policy_due)."""
        return policy_due(active)

    def _source(self) -> SourceView:
        found = self.sources.source(self.namespace, self.name) if self.sources is not None else None
        if found is None or found.spec is None:
            raise Unavailable(f"spec.secretSourceRef: SecretSource {self.name} is not known (yet)")
        if found.spec.vault is None or found.spec.vault.pki is None:
            raise InvalidSpec(f"spec.secretSourceRef: SecretSource {self.name} does not issue certificates (it has "
                              "no spec.vault.pki); strategy certificate renews those")
        return found

    def _certificate(self) -> dict[str, Any]:
        return dict(self._source().status.get("certificate") or {})

    async def capture(self, active: Mapping[str, str]) -> Values:
        certificate = self._certificate()
        if not certificate.get("serial"):
            raise Unavailable(f"spec.secretSourceRef: SecretSource {self.name} has issued no certificate yet")
        return certificate_values(certificate)

    async def publish(self, old: Mapping[str, str], rotation_id: str) -> Values:
        """The source's certificate for ROTATION_ID: the one it issued before a crash, or a new one asked
        for now (waited for up to PUBLISH_WAIT; then Unavailable, and the phase runs again)."""
        certificate = self._certificate()
        if certificate.get("rotation") != rotation_id:
            if not isinstance(self.sources, CertificateRequests):
                raise InvalidSpec("spec.strategy: this operator's SecretSource engine cannot renew certificates "
                                  "on request")
            self.sources.request_certificate(self.namespace, self.name, rotation_id)
            fault_point("Publishing", "requested")
        loop = asyncio.get_running_loop()
        until = loop.time() + PUBLISH_WAIT
        while True:
            certificate = self._certificate()
            if certificate.get("rotation") == rotation_id and certificate.get("serial"):
                return certificate_values(certificate)
            if loop.time() >= until:
                break
            await asyncio.sleep(POLL)
        ready = get_condition(self._source().status.get("conditions"), keys.READY) or {}
        why = f": {ready.get('message')}" if ready.get("status") == "False" and ready.get("message") else ""
        raise Unavailable(f"SecretSource {self.name} has not issued this rotation's certificate yet{why}")

    async def revoke(self, old: Mapping[str, str], new: Mapping[str, str], since: datetime.datetime | None) -> None:
        """The old serial goes on the CRL (spec.certificate.revokeAfterOverlap)."""
        serial = old.get("serial")
        if not self.spec.certificate.revoke_after_overlap or not serial or serial == new.get("serial"):
            return
        pki = self._source().spec
        assert pki is not None and pki.vault is not None and pki.vault.pki is not None  # _source checked
        await self.issuer.revoke_certificate(pki.vault.pki.mount, serial)

    async def rollback(self, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        """Nothing to undo: the old certificate's key was never kept, so it cannot be put back; it stays
        valid (never revoked) and the new one stays in the Secret."""
