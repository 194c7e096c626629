"""Report a leak: PENDING on issue #6 (LeakIncident); not implemented, so not claimed.

Scenario, once #6 lands: a LeakIncident naming db-credentials contains it (rotates and revokes the
leaked version in Vault), lists the blast radius (the workloads that read it) and records the audit
trail in its status.
"""

from __future__ import annotations

import pytest


@pytest.mark.skip(reason="pending issue #6 (LeakIncident): the leak runbook is not implemented yet")
def test_reported_leak_is_contained_and_audited() -> None:
    raise AssertionError("pending issue #6")
