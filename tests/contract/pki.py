"""The CertificateIssuer contract: certificates from a PKI role (Vault PKI), as its identity."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from rotor.backends.protocols import CertificateIssuer, InvalidSpec, PermissionDenied
from rotor.planning import times
from tests.contract.cases import case
from tests.contract.subject import Subject


def issuer(s: Subject, *, denied: bool = False) -> CertificateIssuer:
    handle = s.backend.bind(s.namespace, s.spec("any", actor=s.denied if denied else None))
    assert isinstance(handle, CertificateIssuer)
    return handle


class CertificateIssuerContract:
    """CertificateIssuer, as Vault's PKI engine behaves."""

    @case
    async def test_a_certificate_carries_the_names_verifies_against_its_ca_and_keeps_its_key_out_of_repr(
            self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, role, domain = s.pki_role("web")
        started = times.now()  # certificates carry wall-clock times, whatever the backend's test clock
        cert = await issuer(s).issue_certificate(mount, role, f"api.{domain}", [f"www.{domain}"], ["10.9.8.7"],
                                                 600)
        leaf = x509.load_pem_x509_certificate(cert.certificate.encode())
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(cert.issuing_ca.encode()))
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(sans.get_values_for_type(x509.DNSName)) == {f"api.{domain}", f"www.{domain}"}
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.9.8.7")]
        assert int(cert.serial.replace(":", ""), 16) == leaf.serial_number
        assert 540 <= (cert.not_after - started).total_seconds() <= 660
        assert "PRIVATE KEY" in cert.private_key and cert.ca_chain
        assert "BEGIN" not in repr(cert) and cert.serial in repr(cert)
        again = await issuer(s).issue_certificate(mount, role, f"api.{domain}", [], [], 600)
        assert again.serial != cert.serial and again.private_key != cert.private_key
        await issuer(s).revoke_certificate(mount, cert.serial)
        await issuer(s).revoke_certificate(mount, cert.serial)  # again: a no-op

    @case
    async def test_names_the_role_does_not_allow_and_unknown_roles_are_refused(
            self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, role, domain = s.pki_role("strict")
        with pytest.raises(InvalidSpec, match=r"(?i)common name"):
            await issuer(s).issue_certificate(mount, role, "api.elsewhere.example", [], [], 600)
        with pytest.raises(InvalidSpec, match=r"(?i)alternat"):
            await issuer(s).issue_certificate(mount, role, f"api.{domain}", ["evil.example"], [], 600)
        with pytest.raises(InvalidSpec, match=r"(?i)unknown role"):
            await issuer(s).issue_certificate(mount, f"{role}-missing", f"api.{domain}", [], [], 600)

    @case
    async def test_an_identity_without_permission_is_denied(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, role, domain = s.pki_role("guarded")
        with pytest.raises(PermissionDenied):
            await issuer(s, denied=True).issue_certificate(mount, role, f"api.{domain}", [], [], 600)
