"""The backend contract: what engines may rely on, whichever backend answers.

Written once, run against the in-memory fake (tests/unit/backends/test_contract.py) and the real Vault
of the local stack (tests/integration/backends/test_vault_contract.py): a test class there subclasses
BackendContract and provides the `backend_under_test` fixture (a tests.contract.subject.Subject).
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
    """Every case; subclass it with a `backend_under_test` fixture returning a Subject."""
