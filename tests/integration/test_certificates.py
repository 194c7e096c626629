"""spec.vault.pki against the real Vault PKI engine: a source issues a certificate as its own identity
into a kubernetes.io/tls Secret whose leaf verifies against ca.crt with the asked-for SANs; it is renewed
(a new serial) at a fraction of its lifetime; names or roles Vault refuses give Ready=False naming the
field. Status shows serial and times, never key material."""

from __future__ import annotations

import ipaddress
from typing import Any

import hvac
import pytest
from cryptography import x509

from tests.integration.pki_setup import MOUNT, create_role, enable_pki

from .conftest import get_source, secret_data, secret_source, wait_for, wait_ready

pytestmark = pytest.mark.usefixtures("operator")


def pki_env(core: Any, vault: hvac.Client, namespace: str) -> tuple[str, str]:
    """A PKI role for names under NAMESPACE.test, and a Kubernetes-auth role letting NAMESPACE/app issue
    from it (update on pki/issue/<role>, nothing else); (pki role, login role)."""
    enable_pki(vault)
    pki_role = f"{namespace}-web"
    create_role(vault, pki_role, f"{namespace}.test")
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    login = f"{namespace}-app"
    vault.sys.create_or_update_policy(name=login, policy=f'path "{MOUNT}/issue/{pki_role}" '
                                      '{ capabilities = ["update"] }')
    vault.write(f"auth/kubernetes/role/{login}", bound_service_account_names=["app"],
                bound_service_account_namespaces=[namespace], policies=[login], audience="vault", ttl="1h")
    return pki_role, login


def source(namespace: str, login: str, pki_role: str, **pki: Any) -> dict[str, Any]:
    return {"provider": "vault", "serviceAccountName": "app",
            "vault": {"role": login, "pki": {"role": pki_role, "commonName": f"api.{namespace}.test",
                                             "altNames": [f"www.{namespace}.test"], "ipSans": ["10.1.2.3"], **pki}},
            "target": {"name": "tls"}}


def certificate(custom: Any, namespace: str, name: str = "cert") -> dict[str, str]:
    return dict((get_source(custom, namespace, name).get("status") or {}).get("certificate") or {})


def test_a_certificate_is_issued_verifies_against_ca_crt_and_is_renewed(
        custom: Any, core: Any, vault: hvac.Client, namespace: str) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    secret_source(custom, namespace, "cert", source(namespace, login, pki_role, ttl="30s", renewFraction=0.5))
    wait_ready(custom, namespace, "cert")
    secret = core.read_namespaced_secret("tls", namespace)
    assert secret.type == "kubernetes.io/tls" and set(secret.data) == {"tls.crt", "tls.key", "ca.crt"}
    data = secret_data(core, namespace, "tls")
    assert data is not None
    chain = x509.load_pem_x509_certificates(data["tls.crt"])
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    chain[0].verify_directly_issued_by(ca)
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {f"api.{namespace}.test", f"www.{namespace}.test"}
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    first = certificate(custom, namespace)
    assert first["serial"] and first["notAfter"] and first["renewAt"]
    assert "PRIVATE KEY" not in str(get_source(custom, namespace, "cert"))

    renewed = wait_for(lambda: (c := certificate(custom, namespace)).get("serial") not in (None, first["serial"])
                       and c, timeout=25, what="a renewed certificate")
    data = secret_data(core, namespace, "tls")
    assert data is not None
    leaf = x509.load_pem_x509_certificates(data["tls.crt"])[0]
    assert f"{leaf.serial_number:x}" == renewed["serial"].replace(":", "").lstrip("0")
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(data["ca.crt"]))


@pytest.mark.parametrize(("pki", "field"), [
    ({"role": "no-such-role"}, "spec.vault.pki.role"),
    ({"altNames": ["evil.example.com"]}, "spec.vault.pki.altNames"),
])
def test_a_refusal_gives_ready_false_naming_the_field(
        custom: Any, core: Any, vault: hvac.Client, namespace: str, pki: dict[str, Any], field: str) -> None:
    pki_role, login = pki_env(core, vault, namespace)
    if pki.get("role"):  # a role the login may use, that the PKI engine does not have
        vault.sys.create_or_update_policy(name=login, policy=f'path "{MOUNT}/issue/*" {{ capabilities = ["update"] }}')
    secret_source(custom, namespace, "cert", source(namespace, login, pki_role, **pki))
    condition = wait_ready(custom, namespace, "cert", status="False")
    assert field in condition["message"], condition
    assert secret_data(core, namespace, "tls") is None
