"""The AuditTrail contract: reads of one secret, by anyone, from the backend's audit trail."""

from __future__ import annotations

import datetime

import pytest

from rotor.backends.protocols import (
    AuditTrail,
    PermissionDenied,
    VersionStore,
)
from tests.contract.cases import AUDIT_ROW, case, full_handle, versions_of
from tests.contract.subject import MOUNT, Subject


class AuditContract:
    """AuditTrail, as Rotor reads Vault's file audit device."""

    @case
    async def test_audit_reads_are_the_reads_of_this_secret(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = full_handle(s, "db")
        start = await handle.backend_time() - datetime.timedelta(seconds=2)
        s.put("db", {"password": "leaked"})
        s.put("other", {"password": "other"})
        await handle.read_version()
        await s.backend.fetch(s.namespace, s.spec("db"))
        await versions_of(s, "other").read_version()
        denied = s.backend.bind(s.namespace, s.spec("db"), s.denied)
        assert isinstance(denied, VersionStore)
        with pytest.raises(PermissionDenied):
            await denied.read_version()
        await handle.list_versions()  # a metadata read: not a read of the value
        trail = await handle.audit_reads(start, None)
        assert trail is not None and trail.total == 3 and len(trail.reads) == 3
        assert {r["path"] for r in trail.reads} == {f"{MOUNT}/data/{s.path('db')}"}
        assert [(r["serviceAccount"], r["denied"]) for r in trail.reads] == [
            (f"{s.namespace}/{s.service_account}", False), (f"{s.namespace}/{s.service_account}", False),
            (f"{s.namespace}/{s.denied.service_account}", True)]
        roles = [spec.vault.role for spec in (s.spec("db"), s.spec("db", actor=s.denied)) if spec.vault]
        assert [r["role"] for r in trail.reads] == [roles[0], roles[0], roles[1]]
        assert all(r["operation"] == "read" and "leaked" not in str(r) for r in trail.reads)
        assert all(set(r) == AUDIT_ROW for r in trail.reads)
        first = await handle.audit_reads(start, None, limit=1)
        assert first is not None and (len(first.reads), first.total) == (1, 3)
        before = await handle.audit_reads(start - datetime.timedelta(hours=1), start)
        assert before is not None and (before.reads, before.total) == ([], 0)

    @case
    async def test_audit_reads_need_no_permission(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        s.put("db", {"password": "one"})
        await versions_of(s, "db").read_version()
        handle = s.backend.bind(s.namespace, s.spec("db"), s.denied)
        assert isinstance(handle, AuditTrail)
        trail = await handle.audit_reads(s.now() - datetime.timedelta(minutes=1), None)
        assert trail is not None and trail.total == 1

    @case
    async def test_without_an_audit_trail_audit_reads_are_none(self, backend_under_test: Subject) -> None:
        s = backend_under_test
        handle = s.variant(audit=False).bind(s.namespace, s.spec("db"))
        assert isinstance(handle, AuditTrail)
        assert await handle.audit_reads(s.now() - datetime.timedelta(hours=1), None) is None
