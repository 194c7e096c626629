"""The re-list reconciler: what a fresh list no longer has is forgotten, what came meanwhile is kept."""

from __future__ import annotations

import asyncio

from rotor.engines.relist import Key, Relisted, Relister


class Objects:
    """A view (key -> entry) and the API server's truth, with a hook run while the list is in flight."""

    def __init__(self, *names: str) -> None:
        self.view: dict[Key, object] = {("ns", n): object() for n in names}
        self.truth: set[Key] = {("ns", n) for n in names}
        self.during_list: list[Key] = []  # created while the list is on its way (in the view, not in it)
        self.gone: list[Key] = []
        self.present: list[Key] = []

    async def listed(self) -> dict[Key, object | None]:
        answer: dict[Key, object | None] = {key: {"key": key} for key in self.truth}
        await asyncio.sleep(0)
        for key in self.during_list:
            self.view[key] = object()
        return answer

    def kind(self) -> Relisted:
        return Relisted("Thing", lambda: self.view, self.listed, lambda key, _: self.forget(key),
                        lambda key, _: self.present.append(key))

    def forget(self, key: Key) -> None:
        self.gone.append(key)
        self.view.pop(key, None)


def test_what_the_list_lacks_is_forgotten_with_its_cleanup_and_the_rest_stays() -> None:
    things = Objects("a", "b", "c")
    things.truth.discard(("ns", "b"))  # deleted while the watch was away: no DELETED event came

    async def main() -> dict[str, int]:
        return await Relister([things.kind()], interval=0).reconcile()

    assert asyncio.run(main()) == {"Thing": 1}
    assert things.gone == [("ns", "b")] and set(things.view) == {("ns", "a"), ("ns", "c")}
    assert sorted(things.present) == [("ns", "a"), ("ns", "c")]


def test_an_object_created_or_recreated_while_listing_is_kept() -> None:
    things = Objects("a", "b")
    things.truth = {("ns", "a")}
    # "b" deleted before the list and re-created while it was in flight (the view got a new entry),
    # "c" created while it was in flight: neither is in the list, both exist.
    things.during_list = [("ns", "b"), ("ns", "c")]

    async def main() -> dict[str, int]:
        return await Relister([things.kind()], interval=0).reconcile()

    assert asyncio.run(main()) == {"Thing": 0}
    assert things.gone == [] and set(things.view) == {("ns", "a"), ("ns", "b"), ("ns", "c")}


def test_it_runs_when_asked_after_start_up_and_periodically_and_not_while_paused() -> None:
    things = Objects("a")
    now = [0.0]

    async def main() -> tuple[int, int, int, int]:
        gate = asyncio.Event()
        gate.set()
        relist = Relister([things.kind()], interval=0.2, gate=gate, settle=0.01, quiet=5, clock=lambda: now[0])
        relist.start()
        relist.relisted()  # the start-up's own listing: not a re-list
        await asyncio.sleep(0.05)
        at_start = relist.passes
        now[0] = 10.0
        relist.relisted()  # a re-list, later
        await asyncio.sleep(0.05)
        asked = relist.passes
        await asyncio.sleep(0.25)
        periodic = relist.passes
        gate.clear()  # a standby: nothing is listed
        relist.soon()
        await asyncio.sleep(0.3)
        paused = relist.passes - periodic
        gate.set()
        await asyncio.sleep(0.05)
        await relist.stop()
        return at_start, asked, periodic, paused

    at_start, asked, periodic, paused = asyncio.run(main())
    assert at_start == 0 and asked == 1 and periodic >= 2
    assert paused <= 1  # at most the pass under way when the pause came


def test_a_failed_list_is_tried_again_and_forgets_nothing() -> None:
    things = Objects("a")
    calls = [0]

    async def failing() -> dict[Key, object | None]:
        calls[0] += 1
        raise RuntimeError("the API server is away")

    async def main() -> int:
        relist = Relister([Relisted("Thing", lambda: things.view, failing, lambda key, _: things.forget(key))],
                          interval=0.05, settle=0.0)
        relist.start()
        await asyncio.sleep(0.2)
        await relist.stop()
        return relist.passes

    assert asyncio.run(main()) == 0
    assert calls[0] >= 1 and things.gone == [] and ("ns", "a") in things.view


def test_a_kind_too_costly_for_the_periodic_pass_is_listed_only_after_a_re_list() -> None:
    cheap, costly = Objects("a"), Objects("w")
    cheap.truth, costly.truth = set(), set()
    kinds = [cheap.kind(), Relisted("Costly", lambda: costly.view, costly.listed,
                                    lambda key, _: costly.forget(key), periodic=False)]

    async def main() -> tuple[dict[str, int], dict[str, int]]:
        relist = Relister(kinds, interval=0)
        return await relist.reconcile(asked=False), await relist.reconcile(asked=True)

    periodic, asked = asyncio.run(main())
    assert periodic == {"Thing": 1} and asked == {"Thing": 0, "Costly": 1}
    assert costly.gone == [("ns", "w")]
