"""What a backend can do for Rotor beyond reading, named so specs can be checked against it."""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    READ = "read"  # fetch a SecretSource's values
    WRITE_VERSION = "write-version"  # write a new version with check-and-set
    VERSIONS = "versions"  # list, read and destroy earlier versions; per-secret metadata
    LEASES = "leases"  # issue, renew and revoke per-lease (dynamic) credentials
    STATIC_CREDENTIALS = "static-credentials"  # have the backend set a new password for a static role
    AUDIT_TRAIL = "audit-trail"  # who read a secret in a time window
    KEY_VERSIONS = "key-versions"  # rotate a named key (Vault Transit) and set its minimum usable versions
    CERTIFICATES = "certificates"  # issue certificates from a PKI role (Vault PKI) and revoke them
