"""The typed way from Kopf's memo to Rotor's runtime (rotor.wiring.Runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import kopf

if TYPE_CHECKING:
    from rotor.wiring import Runtime


def runtime_of(memo: kopf.Memo) -> Runtime:
    """The runtime the startup handler built; handlers only run after it."""
    runtime: Runtime = memo.runtime
    return runtime
