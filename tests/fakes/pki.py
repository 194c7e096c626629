"""PKI certificates of the in-memory FakeBackend (CertificateIssuer), answering as Vault's PKI engine
does: a real CA (made with `cryptography`) signs a real leaf, names are checked against the role the
way Vault checks allowed_domains / allow_subdomains / allow_ip_sans, the TTL is capped at max_ttl."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from rotor.backends.protocols import Certificate, InvalidSpec

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_key(key_type: str = "ec", bits: int | None = None) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(65537, bits or 2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP384R1() if bits == 384 else ec.SECP256R1())


def pem_key(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class FakeCa:
    """A self-signed root, made on first use."""

    @cached_property
    def key(self) -> PrivateKey:
        return new_key()

    @cached_property
    def cert(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rotor fake root CA")])
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))


@dataclass
class FakePkiRole:
    allowed_domains: tuple[str, ...]
    allow_subdomains: bool = True
    allow_ip_sans: bool = True
    max_ttl: int = 3600
    ca: FakeCa = field(default_factory=FakeCa)
    issued: list[str] = field(default_factory=list)  # serials, oldest first (tests count them)


class FakePkiCertificates:
    """Mixed into FakeSecret: its _pki_role finds a role of the backend, recording the call."""

    def _pki_role(self, operation: str, mount: str, role: str) -> FakePkiRole:
        raise NotImplementedError

    def _revoked(self) -> set[str]:
        raise NotImplementedError

    async def issue_certificate(self, mount: str, role: str, common_name: str, alt_names: Sequence[str],
                                ip_sans: Sequence[str], ttl: int, key_type: str | None = None,
                                key_bits: int | None = None) -> Certificate:
        found = self._pki_role("pki-issue", mount, role)
        where = f"{mount}/issue/{role}"
        for name in (common_name, *alt_names):
            if not allowed(name, found):
                what = "common name" if name == common_name else "subject alternate name"
                raise InvalidSpec(f"fake backend rejected pki-issue {where} (400): {what} {name} not allowed by "
                                  "this role")
        if ip_sans and not found.allow_ip_sans:
            raise InvalidSpec(f"fake backend rejected pki-issue {where} (400): IP Subject Alternative Names are not "
                              "allowed in this role")
        key = new_key(key_type or "ec", key_bits)
        now = datetime.datetime.now(datetime.UTC)  # the wall clock, as the worker's renewAt is
        not_after = (now + datetime.timedelta(seconds=min(ttl, found.max_ttl))).replace(microsecond=0)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys((common_name, *alt_names))]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(found.ca.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(seconds=30)).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(found.ca.key, hashes.SHA256()))
        serial = ":".join(f"{leaf.serial_number:040x}"[i:i + 2] for i in range(0, 40, 2))
        found.issued.append(serial)
        ca = pem_cert(found.ca.cert)
        return Certificate(pem_cert(leaf), pem_key(key), (ca,), ca, serial, not_after)

    async def revoke_certificate(self, mount: str, serial: str) -> None:
        self._revoked().add(serial)


def allowed(name: str, role: FakePkiRole) -> bool:
    """Vault's allowed_domains check: the domain itself, or (allow_subdomains) any name under it."""
    return any(name == d or (role.allow_subdomains and name.endswith(f".{d}")) for d in role.allowed_domains)
