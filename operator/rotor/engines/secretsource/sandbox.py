"""Templates rendered off the event loop, in child processes Rotor can kill.

A tenant's template may loop for minutes or allocate gigabytes. Rendering in a thread cannot be
stopped, so it runs in a small pool of child processes (`python -m rotor.engines.secretsource.sandbox`)
under an address-space limit; planning.template bounds the work cooperatively (CPU time, output,
arithmetic) and a child that still runs past the deadline is killed and replaced. Meanwhile the
event loop, peering and every source without a template go on as before.

One request per line on the child's stdin, one reply per line on its stdout (JSON, values base64).
The child's stderr goes nowhere: a traceback could quote a value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import resource
import select
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from rotor.planning.template import DEFAULT_LIMITS, TemplateFailure, TemplateLimits, render

MEMORY_BYTES = 512 << 20  # the child's address space: Python and Jinja use ~30 MiB, values at most 1 MiB
GRACE = 0.5  # seconds past the CPU budget before a child that did not stop by itself is killed
IDLE_EXIT = 300.0  # seconds a child waits for work before it exits (it is started again when needed)
_LINE_LIMIT = 16 << 20  # bytes of one reply line (base64 of up to 1 MiB of output, and keys)


class Renderer(Protocol):
    async def render(self, templates: Mapping[str, str], values: Mapping[str, bytes]) -> dict[str, bytes]:
        """The rendered keys; raises TemplateFailure (its message names keys, never values)."""

    async def close(self) -> None: ...


class InlineRenderer:
    """Renders in the calling thread: for tests and one-off commands, not for the operator (a loop
    the cooperative budget cannot see would block the event loop)."""

    def __init__(self, limits: TemplateLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    async def render(self, templates: Mapping[str, str], values: Mapping[str, bytes]) -> dict[str, bytes]:
        return render(templates, values, self.limits)

    async def close(self) -> None:
        return None


def _encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


def _decode(data: Mapping[str, str]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in data.items()}


class _Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", __name__, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, limit=_LINE_LIMIT)
        return cls(process)

    async def ask(self, request: bytes) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(request)
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise EOFError("the template renderer exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(Exception):
            await self.process.wait()


class ProcessRenderer:
    """At most WORKERS renders at once, each in a child process; the children are kept for the next."""

    def __init__(self, limits: TemplateLimits = DEFAULT_LIMITS, *, workers: int = 2) -> None:
        self.limits = limits
        self._workers = workers
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Child] = []

    async def render(self, templates: Mapping[str, str], values: Mapping[str, bytes]) -> dict[str, bytes]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._workers)
        request = (json.dumps({"templates": dict(templates), "values": _encode(values),
                               "seconds": self.limits.seconds, "output": self.limits.output_bytes}) + "\n").encode()
        async with self._slots:
            for attempt in range(2):
                child = self._idle.pop() if self._idle else await _Child.start()
                try:
                    reply = await asyncio.wait_for(child.ask(request), self.limits.seconds + GRACE + 2.0 * attempt)
                except TimeoutError:
                    await child.kill()
                    raise TemplateFailure(f"spec.target.template.data: rendering took more than "
                                          f"{self.limits.seconds:g}s of CPU time; simplify the template") from None
                except (EOFError, ConnectionError, ValueError):
                    await child.kill()
                    if attempt == 0 and child.process.returncode == 0:
                        continue  # an idle child that had exited: start a fresh one
                    raise TemplateFailure("spec.target.template.data: rendering ran out of memory or was stopped; "
                                          "simplify the template") from None
                if "error" in reply:
                    if reply.get("fatal"):
                        await child.kill()
                    else:
                        self._idle.append(child)
                    raise TemplateFailure(str(reply["error"]))
                self._idle.append(child)
                return _decode(reply["data"])
        raise AssertionError("unreachable")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for child in idle:
            await child.kill()


# -- the child -------------------------------------------------------------------------------------


def _serve() -> None:
    """Render requests from stdin until it closes (or nothing comes for IDLE_EXIT seconds)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        ready, _, _ = select.select([stdin], [], [], IDLE_EXIT)
        if not ready:
            return
        line = stdin.readline()
        if not line:
            return
        try:
            request = json.loads(line)
            limits = TemplateLimits(seconds=float(request["seconds"]), output_bytes=int(request["output"]))
            reply: dict[str, Any] = {"data": _encode(render(request["templates"], _decode(request["values"]),
                                                            limits))}
        except TemplateFailure as err:  # the template's fault (out of memory included): serve the next one
            reply = {"error": err.message}
        except Exception as exc:  # a broken request: never its message (it may quote a value); then exit
            reply = {"error": f"spec.target.template.data: rendering failed with {type(exc).__name__}",
                     "fatal": True}
        stdout.write((json.dumps(reply) + "\n").encode())
        stdout.flush()
        if reply.get("fatal"):
            return


if __name__ == "__main__":
    _serve()
