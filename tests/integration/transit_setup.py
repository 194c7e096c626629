"""Vault's Transit engine as an administrator sets it up for a namespace's keys (shared by the backend
contract and the transit rotation tests)."""

from __future__ import annotations

import hvac
import hvac.exceptions

MOUNT = "transit"


def enable_transit(vault: hvac.Client) -> None:
    """The Transit engine at MOUNT (once per Vault: later calls find it there)."""
    if f"{MOUNT}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
        try:
            vault.sys.enable_secrets_engine("transit", path=MOUNT)
        except hvac.exceptions.InvalidRequest as exc:  # enabled meanwhile by another test process
            if "path is already in use" not in str(exc):
                raise


def transit_policy(namespace: str) -> str:
    """What a rotating identity needs on NAMESPACE's keys (named NAMESPACE-*): read the versions (GET
    keys/<key>), rotate and raise the minimums (POST keys/<key>/rotate and /config; Vault's glob is a
    prefix, so one path covers them), and export the versions of an exportable key (GET
    export/<type>/<key>/<version>; `+` matches the type)."""
    return (f'path "{MOUNT}/keys/{namespace}-*" {{ capabilities = ["read", "update"] }}\n'
            f'path "{MOUNT}/export/+/{namespace}-*" {{ capabilities = ["read"] }}')


def create_key(vault: hvac.Client, key: str, key_type: str = "aes256-gcm96", *, exportable: bool = False) -> None:
    vault.write(f"{MOUNT}/keys/{key}", type=key_type, exportable=exportable)
