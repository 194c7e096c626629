"""Vault's PKI engine as an administrator sets it up for a namespace's certificates (shared by the
backend contract and the certificate tests)."""

from __future__ import annotations

import hvac
import hvac.exceptions

MOUNT = "pki"


def enable_pki(vault: hvac.Client) -> None:
    """The PKI engine at MOUNT with a root CA (once per Vault: later calls find them there)."""
    if f"{MOUNT}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
        try:
            vault.sys.enable_secrets_engine("pki", path=MOUNT, config={"max_lease_ttl": "87600h"})
        except hvac.exceptions.InvalidRequest as exc:  # enabled meanwhile by another test process
            if "path is already in use" not in str(exc):
                raise
    if not (vault.list(f"{MOUNT}/issuers") or {}).get("data", {}).get("keys"):
        vault.write(f"{MOUNT}/root/generate/internal", common_name="Rotor test root", ttl="87600h")


def create_role(vault: hvac.Client, role: str, domain: str) -> None:
    """A role issuing for DOMAIN and names under it, with IP SANs, EC P-256 keys, at most an hour."""
    vault.write(f"{MOUNT}/roles/{role}", allowed_domains=[domain], allow_subdomains=True, allow_bare_domains=True,
                allow_ip_sans=True, max_ttl="1h", key_type="ec", key_bits=256)


def pki_policy(namespace: str) -> str:
    """What an issuing identity needs on NAMESPACE's roles (named NAMESPACE-*): issue, and revoke."""
    return (f'path "{MOUNT}/issue/{namespace}-*" {{ capabilities = ["update"] }}\n'
            f'path "{MOUNT}/revoke" {{ capabilities = ["update"] }}')
