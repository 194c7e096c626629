"""The webhook's serving certificate: valid for the address the API server calls, renewed under one CA."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from rotor.servingcert import ServingCertificate


def leaf(pem_file: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem_file.read_bytes())


def test_certificate_is_issued_by_the_ca_for_the_hosts(tmp_path: Path) -> None:
    cert = ServingCertificate(["127.0.0.1", "rotor.rotor-system.svc", "0.0.0.0"], directory=tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(cert.ca_file.read_bytes())
    served = leaf(cert.pem_file)
    served.verify_directly_issued_by(ca)
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["rotor.rotor-system.svc"]
    # The combined file is what the TLS server loads (key and certificate together).
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert.pem_file, cert.pem_file)
    assert oct(cert.pem_file.stat().st_mode & 0o777) == "0o600"


def test_renewal_keeps_the_ca_so_the_ca_bundle_stays_valid(tmp_path: Path) -> None:
    cert = ServingCertificate(["127.0.0.1"], directory=tmp_path / "tls")
    ca_before, first = cert.ca_file.read_bytes(), leaf(cert.pem_file)
    cert.issue()
    renewed = leaf(cert.pem_file)
    assert cert.ca_file.read_bytes() == ca_before and renewed.serial_number != first.serial_number
    renewed.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_before))
