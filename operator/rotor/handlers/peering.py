"""Is this replica the active one? Rotor's own schedulers work only while Kopf's watches do.

Kopf peering pauses the watches of a standby replica (a higher-priority peer is alive, or two peers
share a priority), but the refresh, rotation and incident schedulers run outside Kopf, and so do
Rotor's own watches of SecretSources and managed Secrets, which schedule work on every replica.
`follow_pause` mirrors Kopf's pause into an asyncio.Event that the schedulers take as their gate: set
while Kopf processes events, clear while it is paused and until Kopf's peering has first decided.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("rotor.peering")


class PauseState(Protocol):
    """What Rotor uses of Kopf's pause toggle set (kopf._cogs.aiokits.aiotoggles.ToggleSet)."""

    def is_on(self) -> bool: ...

    async def wait_for(self, state: bool, /) -> None: ...


def kopf_pause_state() -> PauseState | None:
    """Kopf's operator-wide pause switch (on while peering pauses this replica), or None if not found.

    Kopf internals, on purpose and only here: Kopf (checked with 1.38-1.45) has no public way to ask
    whether the operator is paused. `kopf.spawn_tasks` makes the switch as a local,
    `operator_paused = aiotoggles.ToggleSet(any)`, and hands it to its own root tasks only, among them
    the guarded task named "daemon killer": `aiotasks.guard(coro=daemons.daemon_killer(operator_paused=
    ...))`. That task exists before the startup handlers run, so they read the switch from its
    coroutine's arguments. A Kopf release that changes this makes the lookup return None, which the
    start-up turns into a clear failure in peering mode (tests/integration/test_ha.py covers it).
    """
    for task in asyncio.all_tasks():
        if task.get_name() != "daemon killer":
            continue
        guard = task.get_coro()
        guard_frame = getattr(guard, "cr_frame", None)
        inner = guard_frame.f_locals.get("coro") if guard_frame is not None else None
        inner_frame = getattr(inner, "cr_frame", None)
        paused = inner_frame.f_locals.get("operator_paused") if inner_frame is not None else None
        if paused is not None and callable(getattr(paused, "is_on", None)) and callable(
                getattr(paused, "wait_for", None)):
            found: PauseState = paused
            return found
    return None


async def follow_pause(paused: PauseState, active: asyncio.Event,
                       resumed: Callable[[], None] | None = None) -> None:
    """Keep ACTIVE set exactly while PAUSED is off, until cancelled; call RESUMED on each resume after
    a pause (the views missed what changed meanwhile: Kopf re-lists, and a re-list brings no DELETED
    events, so rotor.engines.relist reconciles them).

    Until Kopf's peering has decided, ACTIVE stays clear. At start-up the switch is off only because
    Kopf's peering has not begun (its root tasks start after the startup handlers), while Rotor's own
    SecretSource watch already lists and schedules every source: a standby must not sync them in
    that gap. Kopf (1.38-1.45) turns the switch on first when a peering name is given (its peering
    toggle starts on, or the peering CRD is not seen yet) and off once no higher-priority peer is
    alive; a Kopf that stopped doing so would leave the replica paused (tests/integration/test_ha.py).
    """
    if not paused.is_on():
        await paused.wait_for(True)  # undecided: Kopf's peering has not started yet
    first = True
    was_paused = False
    while True:
        if paused.is_on():
            if active.is_set() or first:
                active.clear()
                log.info("Kopf paused this replica (peering): Rotor's schedulers are paused too")
            was_paused = True
            await paused.wait_for(False)
        else:
            if not active.is_set():
                active.set()
                log.log(logging.DEBUG if first else logging.INFO,
                        "Kopf resumed this replica (peering): Rotor's schedulers run again")
                if was_paused and resumed is not None:
                    resumed()
            await paused.wait_for(True)
        first = False
