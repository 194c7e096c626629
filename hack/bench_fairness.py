"""`python hack/bench_fairness.py`: the quiet tenant's sync delay beside a noisy one, in Rotor's scheduler.

What it measures: rotor.engines.scheduler.RefreshScheduler as the operator runs it (16 workers), with
each sync standing in for a backend read of LATENCY seconds through a connection that allows 16 at
once. A noisy tenant has NOISY sources refreshing at the minimum interval (10 s), more than the
workers can keep up with; a quiet tenant has 10. The delay of a sync is when it started minus when it
was due. Three runs: the quiet tenant alone; beside the noisy one with fair shares (round-robin across
namespaces, today's scheduler); and beside it first-come-first-served (every key in one queue, the
scheduler before fair shares). Figures, not pass/fail. Not measured here: the Vault token bucket, the
API server, templates (see hack/bench.py for the whole operator).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Hashable
from unittest import mock

from rotor.engines import scheduler as scheduler_module
from rotor.engines.scheduler import RefreshScheduler

QUIET = 10


async def run(noisy: int, interval: float, latency: float, workers: int, seconds: float) -> list[float]:
    """Delays (seconds) of the quiet tenant's syncs during SECONDS of load."""
    connection = asyncio.Semaphore(16)
    due: dict[Hashable, float] = {}
    delays: list[float] = []
    started = time.monotonic()

    async def sync(key: Hashable) -> float | None:
        now = time.monotonic()
        if isinstance(key, tuple) and key[0] == "quiet":
            delays.append(now - due[key])
        async with connection:
            await asyncio.sleep(latency)
        due[key] = time.monotonic() + interval
        return interval

    s = RefreshScheduler(sync, workers=workers, gauges=False)
    for i in range(noisy):
        due[("noisy", f"s{i}")] = started
        s.schedule(("noisy", f"s{i}"), 0.0)
    for i in range(QUIET):
        due[("quiet", f"s{i}")] = started
        s.schedule(("quiet", f"s{i}"), 0.0)
    s.start()
    await asyncio.sleep(seconds)
    await s.stop()
    return delays


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noisy", type=int, default=2000, help="the noisy tenant's sources")
    parser.add_argument("--interval", type=float, default=10.0, help="refresh interval of every source (s)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds one backend read takes")
    parser.add_argument("--workers", type=int, default=16, help="sync workers (settings.sync_workers)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    args = parser.parse_args()
    capacity = min(args.workers, 16) / args.latency
    print(f"noisy tenant: {args.noisy} sources every {args.interval:.0f}s ({args.noisy / args.interval:.0f} syncs/s "
          f"asked; the workers do about {capacity:.0f}/s); quiet tenant: {QUIET} sources; {args.seconds:.0f}s each run")
    runs = {
        "quiet alone": lambda: run(0, args.interval, args.latency, args.workers, args.seconds),
        "beside noisy, fair shares": lambda: run(args.noisy, args.interval, args.latency, args.workers, args.seconds),
    }
    results = {name: asyncio.run(make()) for name, make in runs.items()}
    with mock.patch.object(scheduler_module, "namespace_of", lambda key: ""):  # one queue: first come, first served
        results["beside noisy, one queue (before)"] = asyncio.run(
            run(args.noisy, args.interval, args.latency, args.workers, args.seconds))
    print(f"{'quiet tenant sync delay':<36}{'syncs':>8}{'p50 s':>10}{'p99 s':>10}{'max s':>10}")
    for name, delays in results.items():
        print(f"{name:<36}{len(delays):>8}{statistics.median(delays) if delays else float('nan'):>10.2f}"
              f"{percentile(delays, 99):>10.2f}{max(delays, default=float('nan')):>10.2f}")


if __name__ == "__main__":
    main()
