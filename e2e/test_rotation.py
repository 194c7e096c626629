"""Rotate with overlap: PENDING on issue #5 (RotationPolicy); not implemented, so not claimed.

Scenario, once #5 lands: a RotationPolicy with overlap rotates db-credentials; the annotated Deployment
rolls to the new version while the old credential still works; after the overlap the old one is
revoked in Vault and no pod still uses it.
"""

from __future__ import annotations

import pytest


@pytest.mark.skip(reason="pending issue #5 (RotationPolicy): rotation with overlap is not implemented yet")
def test_rotation_with_overlap_never_breaks_a_reader() -> None:
    raise AssertionError("pending issue #5")
