"""How many audit records per second the listener and its filter take on this machine (issue 19).

Not a timed assertion: it prints the figure (`pytest -s`). A separate process plays Vault and writes a
realistic stream (reads, their request entries, logins, 1% KV writes) as fast as the socket takes it;
the figure counts every record read, and any the listener had to drop. ROTOR_BENCH_RECORDS sets the
stream's length (default 100,000).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from rotor.engines.changefeed.listener import FeedListener
from rotor.engines.changefeed.state import FeedState
from rotor.observability.metrics import REGISTRY
from rotor.planning.changefeed import Change

from .records import login, read, record, write

_SENDER = """
import socket, sys
data = open(sys.argv[2], "rb").read()
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as sock:
    sock.sendall(data)
"""


def _stream(records: int) -> bytes:
    lines = []
    for i in range(100):
        path = f"secret/data/team-{i % 7}/app-{i}"
        if i == 0:
            lines += [write(path), write(path, type="request")]
        elif i < 3:
            lines.append(login())
        elif i % 2:
            lines.append(read(path))
        else:
            lines.append(record(path, "read", type="request"))
    block = b"\n".join(lines[:100]) + b"\n"
    return block * (records // 100)


def _count(connection: str, result: str) -> float:
    return REGISTRY.get_sample_value("rotor_changefeed_records_total",
                                     {"backend": connection, "result": result}) or 0.0


def test_records_per_second_through_listener_and_filter(tmp_path: Path) -> None:
    total = int(os.environ.get("ROTOR_BENCH_RECORDS", "100000")) // 100 * 100
    data = tmp_path / "stream"
    data.write_bytes(_stream(total))
    connection = f"bench-{time.monotonic_ns()}"
    changes: list[Change] = []

    async def main() -> float:
        listener = FeedListener(FeedState(connection, 300.0), changes.append, host="127.0.0.1", port=0)
        await listener.start()
        sender = await asyncio.create_subprocess_exec(sys.executable, "-c", _SENDER, str(listener.bound_port),
                                                      str(data), stdout=subprocess.DEVNULL)
        started = time.perf_counter()
        seen = 0.0
        while seen < total:
            await asyncio.sleep(0.01)
            seen = sum(_count(connection, r) for r in ("change", "ignored", "dropped", "refused"))
            assert time.perf_counter() - started < 120, f"only {seen} of {total} records in 120 s"
        elapsed = time.perf_counter() - started
        await sender.wait()
        await listener.stop()
        return elapsed

    elapsed = asyncio.run(main())
    dropped = _count(connection, "dropped")
    size = data.stat().st_size
    print(f"\nchange feed: {total:,} records ({size / total:.0f} bytes each) in {elapsed:.2f} s = "
          f"{total / elapsed:,.0f} records/s ({size / elapsed / 2**20:.0f} MiB/s), dropped {dropped:.0f}, "
          f"changes {len(changes)}")
    assert len(changes) == total // 100 or dropped  # every KV write found, unless records were dropped
    assert _count(connection, "change") == len(changes)
