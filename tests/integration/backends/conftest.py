"""One namespace per test module, set up for the Vault backend (vault_subject.set_up); a fresh Subject
(backend, secret paths) per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import kubernetes
import pytest

from tests.devenv import Stack

from .vault_subject import VaultSubject, VaultWorld, set_up, tear_down


@pytest.fixture(scope="module")
def world(stack: Stack, vault: hvac.Client, core: Any) -> Iterator[VaultWorld]:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    built = set_up(stack, vault, core, namespace)
    yield built
    tear_down(stack, built)
    try:
        core.delete_namespace(namespace)
    except kubernetes.client.ApiException:
        pass


@pytest.fixture
def subject(stack: Stack, vault: hvac.Client, world: VaultWorld) -> Iterator[VaultSubject]:
    made = VaultSubject(stack, vault, world)
    yield made
    made.close()
