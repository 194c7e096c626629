"""Vault / OpenBao: KV v1/v2 reads, KV v2 versions, database leases and static roles, Transit keys, the audit log.

The only package that imports hvac. `backend` reads and logs in; `handle` acts on one secret.
"""

from rotor.backends.vault.backend import Identity, VaultBackend

__all__ = ["Identity", "VaultBackend"]
