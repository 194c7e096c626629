"""The template sandbox process: a bomb becomes TemplateError in about a second, killed if it must be,
while the event loop and other renders go on; errors never carry a value."""

from __future__ import annotations

import asyncio
import time

import pytest

from rotor.engines.secretsource.sandbox import ProcessRenderer
from rotor.planning.template import TemplateFailure, TemplateLimits

CANARY = "canary-5be1d0"
VALUES = {"password": CANARY.encode()}
# No operation the cooperative budget sees: only killing the process stops it.
BARE_LOOPS = "{% set x = values.password * 50000 %}{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}"


async def attempt(renderer: ProcessRenderer, text: str) -> tuple[str, float]:
    started = time.monotonic()
    try:
        out = await renderer.render({"k": text}, VALUES)
        return out["k"].decode(), time.monotonic() - started
    except TemplateFailure as err:
        return err.message, time.monotonic() - started


def test_a_bomb_is_stopped_in_about_a_second_while_the_loop_and_other_renders_go_on() -> None:
    async def scenario() -> None:
        renderer = ProcessRenderer(TemplateLimits(seconds=1.0), workers=2)
        lags: list[float] = []

        async def heartbeat() -> None:
            for _ in range(30):
                before = time.monotonic()
                await asyncio.sleep(0.05)
                lags.append(time.monotonic() - before - 0.05)

        try:
            bomb, fine, _ = await asyncio.gather(attempt(renderer, BARE_LOOPS),
                                                 attempt(renderer, "{{ values.password | length }}"), heartbeat())
            assert "more than 1s of CPU time" in bomb[0] and bomb[1] < 4.0
            assert fine[0] == str(len(CANARY)) and fine[1] < 2.0
            assert max(lags) < 0.2  # the event loop never stalled
            again = await attempt(renderer, "{{ values.password | upper }}")  # a fresh child replaced it
            assert again[0] == CANARY.upper()
        finally:
            await renderer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("text", ["{{ values[values.password] }}", "{{ 'x' * 10**9 }}",
                                  "{{ values.password|int + [] }}", "{{ values.password | center(1000000000) }}"])
def test_errors_from_the_child_name_no_value(text: str) -> None:
    async def scenario() -> str:
        renderer = ProcessRenderer(TemplateLimits(seconds=1.0), workers=1)
        try:
            return (await attempt(renderer, text))[0]
        finally:
            await renderer.close()

    message = asyncio.run(scenario())
    assert message.startswith("spec.target.template.data") and CANARY not in message
