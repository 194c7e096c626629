"""The admission webhook's TLS: a private CA held in memory and a short-lived serving certificate.

Kopf's WebhookServer serves the files written here, re-reads them when they change, and puts the CA
into the MutatingWebhookConfiguration's caBundle. The serving certificate is renewed long before it
expires and signed by the same CA, so the caBundle never has to change while Rotor runs. The CA's
private key never touches the disk; a restart makes a new CA and Kopf updates the caBundle.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("rotor.webhook")


class ServingCertificate:
    def __init__(self, hosts: Sequence[str], *, directory: Path | None = None,
                 lifetime: datetime.timedelta = datetime.timedelta(days=30),
                 ca_lifetime: datetime.timedelta = datetime.timedelta(days=3650)) -> None:
        self.hosts = [h for h in dict.fromkeys(hosts) if h and h not in ("0.0.0.0", "::")]
        self.lifetime = lifetime
        self.dir = directory or Path(tempfile.mkdtemp(prefix="rotor-webhook-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotor-webhook-ca")])
        self._ca = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + ca_lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._ca_key, hashes.SHA256()))
        self.ca_file.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        self.expires = now
        self.issue()

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def pem_file(self) -> Path:
        """Key and certificate in one file: replaced atomically, so a reader never sees a mismatched pair."""
        return self.dir / "tls.pem"

    def issue(self) -> None:
        """A new serving certificate for the hosts."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = []
        for host in self.hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        self.expires = now + self.lifetime
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.hosts[0])]))
            .issuer_name(self._ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(self.expires)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._ca_key, hashes.SHA256()))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        _write(self.pem_file, pem + cert.public_bytes(serialization.Encoding.PEM))

    async def keep_renewed(self) -> None:
        """Renew at two thirds of the lifetime; Kopf notices the new files and serves them."""
        while True:
            renew_at = self.expires - self.lifetime / 3
            seconds = (renew_at - datetime.datetime.now(datetime.UTC)).total_seconds()
            await asyncio.sleep(max(1.0, seconds))
            self.issue()
            log.info("webhook serving certificate renewed; valid until %s", self.expires.isoformat())


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)
