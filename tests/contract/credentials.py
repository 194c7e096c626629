"""The LeaseIssuer and StaticCredentials contracts: leases, static roles, the backend's clock."""

from __future__ import annotations

import datetime

import pytest

from rotor.backends.protocols import (
    InvalidSpec,
    NotFound,
    StaticCredentials,
)
from tests.contract.cases import CLOCK_SLACK, case, full_handle
from tests.contract.subject import Subject


class CredentialsContract:
    """LeaseIssuer and StaticCredentials, as Vault's database secrets engine behaves."""

    # -- LeaseIssuer --------------------------------------------------------------------------------------

    @case
    async def test_a_lease_is_issued_renewed_up_to_its_max_and_revoked(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, role, ttl, max_ttl = s.lease_role
        handle = full_handle(s)
        assert await handle.lease_role_ttl(mount, role) == (ttl, max_ttl)
        lease = await handle.issue_lease(mount, role)
        assert lease.lease_id and lease.ttl == ttl and lease.renewable
        assert {"username", "password"} <= set(lease.data)
        assert lease.data["password"] not in repr(lease)
        assert await handle.lease_alive(lease.lease_id)
        assert 0 < await handle.renew_lease(lease.lease_id) <= ttl
        assert ttl < await handle.renew_lease(lease.lease_id, 10 * max_ttl) <= max_ttl
        await handle.revoke_lease(lease.lease_id)
        assert not await handle.lease_alive(lease.lease_id)
        await handle.revoke_lease(lease.lease_id)  # already gone: a no-op
        with pytest.raises(NotFound):
            await handle.renew_lease(lease.lease_id)

    @case
    async def test_a_lease_dies_after_its_grace_unless_held(self, backend_under_test: Subject) -> None:
        """A caller that dies between issuing a lease and recording it leaves nothing that outlives the
        grace; a held lease lives on (renewable as usual)."""
        s = backend_under_test
        mount, role, ttl, max_ttl = s.lease_role
        handle = full_handle(s)
        held = await handle.issue_lease(mount, role, grace=2)
        loose = await handle.issue_lease(mount, role, grace=2)
        assert held.holder and held.holder not in repr(held)
        assert await handle.hold_lease(held, max_ttl) == max_ttl
        assert abs(await handle.backend_time() - s.now()) < CLOCK_SLACK
        await s.elapse(5)
        assert not await handle.lease_alive(loose.lease_id)
        assert await handle.lease_alive(held.lease_id)
        assert 0 < await handle.renew_lease(held.lease_id) <= ttl
        await handle.revoke_lease(held.lease_id)
        assert not await handle.lease_alive(held.lease_id)

    @case
    async def test_leases_are_independent(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, role, _, _ = s.lease_role
        handle = full_handle(s)
        first, second = await handle.issue_lease(mount, role), await handle.issue_lease(mount, role)
        assert first.lease_id != second.lease_id and first.data["username"] != second.data["username"]
        await handle.revoke_lease(first.lease_id)
        assert await handle.lease_alive(second.lease_id)
        await handle.revoke_lease(second.lease_id)
        assert not await handle.lease_alive(f"{mount}/creds/{role}/never-issued")

    @case
    async def test_an_unknown_role_is_an_invalid_spec(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = full_handle(s)
        lease_mount, _, _, _ = s.lease_role
        with pytest.raises(InvalidSpec):
            await handle.issue_lease(lease_mount, f"{s.namespace}-nope")
        with pytest.raises(NotFound):  # as Vault: reading a role that does not exist is a 404
            await handle.lease_role_ttl(lease_mount, f"{s.namespace}-nope")
        static_mount, _, _ = s.static_role
        for call in (handle.static_credentials, handle.rotate_static, handle.static_last_rotation):
            with pytest.raises(InvalidSpec):
                await call(static_mount, f"{s.namespace}-nope")

    # -- StaticCredentials --------------------------------------------------------------------------------

    @case
    async def test_rotating_a_static_role_sets_a_new_password_now(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        mount, role, username = s.static_role
        handle = full_handle(s)
        before = await handle.static_credentials(mount, role)
        last = await handle.static_last_rotation(mount, role)
        assert before["username"] == username and before["password"]
        assert isinstance(last, datetime.datetime)
        await s.elapse(0.05)
        await handle.rotate_static(mount, role)
        after = await handle.static_credentials(mount, role)
        moved = await handle.static_last_rotation(mount, role)
        assert after["username"] == username and after["password"] != before["password"]
        assert moved is not None and moved > last
        assert abs(moved - await handle.backend_time()) < CLOCK_SLACK

    @case
    async def test_backend_time_is_the_backend_clock_now_for_anyone(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        for actor in (None, s.denied):
            handle = s.backend.bind(s.namespace, s.spec("db"), actor)
            assert isinstance(handle, StaticCredentials)
            now = await handle.backend_time()
            assert now.utcoffset() == datetime.timedelta(0) and abs(now - s.now()) < CLOCK_SLACK
