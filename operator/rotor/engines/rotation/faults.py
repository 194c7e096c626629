"""Fault injection for crash-safety tests (tests/integration/test_rotation_crash.py and
test_rotation_faults.py): unset in production, where every fault point is a no-op."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("rotor.engines.rotation")


def fault_point(phase: str, moment: str) -> None:
    """ROTOR_FAULT_KILL_AT=<Phase>:<moment> SIGKILLs the operator exactly there: "before" or "after" a
    phase's action (the phase persisted, its action not yet done or not yet recorded), or a moment
    inside one (Publishing:issued: a lease issued, not yet recorded)."""
    if os.environ.get("ROTOR_FAULT_KILL_AT") == f"{phase}:{moment}":
        log.warning("fault injection: SIGKILL at %s:%s", phase, moment)
        os.kill(os.getpid(), signal.SIGKILL)
