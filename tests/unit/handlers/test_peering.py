"""Following Kopf's peering pause: the schedulers' gate, and a reconcile asked for on each resume."""

from __future__ import annotations

import asyncio

from rotor.handlers.peering import follow_pause


class Switch:
    """Kopf's pause switch as Rotor uses it (rotor.handlers.peering.PauseState)."""

    def __init__(self) -> None:
        self.on = False
        self.moved = asyncio.Event()

    def is_on(self) -> bool:
        return self.on

    async def wait_for(self, state: bool, /) -> None:
        while self.on != state:
            await self.moved.wait()
            self.moved.clear()

    def set(self, on: bool) -> None:
        self.on = on
        self.moved.set()


def test_a_resume_after_a_pause_asks_for_a_reconcile_and_the_first_start_does_not() -> None:
    async def main() -> tuple[int, int]:
        switch, active, resumed = Switch(), asyncio.Event(), []
        task = asyncio.create_task(follow_pause(switch, active, lambda: resumed.append(1)))
        await asyncio.sleep(0.01)
        at_start = len(resumed)
        switch.set(True)
        await asyncio.sleep(0.01)
        assert not active.is_set()
        switch.set(False)
        await asyncio.sleep(0.01)
        assert active.is_set()
        task.cancel()
        return at_start, len(resumed)

    assert asyncio.run(main()) == (0, 1)


def test_a_replica_is_not_active_before_kopfs_peering_has_decided() -> None:
    """At start-up Kopf's switch is off only because its peering has not begun, while Rotor's own watch
    already schedules every SecretSource: a standby starting next to an active replica must not sync."""
    async def main() -> list[bool]:
        switch, active = Switch(), asyncio.Event()
        task = asyncio.create_task(follow_pause(switch, active))
        seen = []
        for on in (None, True, False):  # undecided, then paused (Kopf's peering starts so), then decided: active
            if on is not None:
                switch.set(on)
            await asyncio.sleep(0.01)
            seen.append(active.is_set())
        task.cancel()
        return seen

    assert asyncio.run(main()) == [False, False, True]
