"""The backend contract against the real VaultBackend and the stack's Vault (file audit device, database
secrets engine over PostgreSQL): the same cases the in-memory fake passes in the unit suite."""

from __future__ import annotations

import pytest

from tests.contract.backend import BackendContract

from .vault_subject import VaultSubject


@pytest.fixture
def backend_under_test(subject: VaultSubject) -> VaultSubject:
    return subject


class TestVaultBackend(BackendContract):
    pass
