"""The backend contract against the in-memory FakeBackend (engine unit tests rely on it)."""

from __future__ import annotations

import pytest

from tests.contract.backend import BackendContract
from tests.contract.fake_subject import FakeSubject


@pytest.fixture
def backend_under_test() -> FakeSubject:
    return FakeSubject()


class TestFakeBackend(BackendContract):
    pass
