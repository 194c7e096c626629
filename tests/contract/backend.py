"""The backend contract: what engines may rely on, whichever backend answers.

Written once, run against the in-memory fake (tests/unit/backends/test_contract.py) and the real Vault
of the local stack (tests/integration/backends/test_vault_contract.py): a test class there subclasses
BackendContract and provides the `backend_under_test` fixture (a tests.contract.subject.Subject). AWS
(tests/integration/aws/test_aws_contract.py) runs the read, version and staged contracts only.
Anything an engine unit test relies on of the fake is pinned here, so the fake cannot drift from Vault
unnoticed. One class per protocol, in the module named for it.
"""

from __future__ import annotations

from tests.contract.audit import AuditContract
from tests.contract.credentials import CredentialsContract
from tests.contract.keys import KeyRingContract
from tests.contract.pki import CertificateIssuerContract
from tests.contract.reads import ReadContract
from tests.contract.versions import VersionStoreContract


class BackendContract(ReadContract, VersionStoreContract, CredentialsContract, AuditContract, KeyRingContract,
                      CertificateIssuerContract):
    """Every case, for a backend shaped as Vault (KV v2, every capability); subclass it with a
    `backend_under_test` fixture returning a Subject. Other backends run the contracts of what they
    declare (reads.py, versions.py, staged.py) with their own capability attributes."""

    # As Vault's KV v2 (so the fake cannot drift from it): see ReadContract and VersionStoreContract.
    versioned_handles = True
    single_property = False
    numbered_versions = True
    versions_kept = 10  # the mount's max_versions (Vault's default)
    destroys_latest_version = True
    metadata_without_versions = True
    atomic_check_and_set = True
