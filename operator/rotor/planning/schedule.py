"""When to look at a source again: refresh intervals with jitter, and capped exponential backoff."""

from __future__ import annotations


def refresh_delay(interval: float, jitter: float, u: float) -> float:
    """Seconds until the next refresh; u in [0, 1) spreads sources over the last JITTER fraction of the
    interval. Jitter only ever makes a refresh earlier, so the interval bounds how stale a value can be."""
    return float(max(1.0, interval * (1.0 - jitter * u)))


def backoff_delay(attempt: int, u: float, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before retry number ATTEMPT (1-based): full-jitter exponential backoff, capped."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    return max(base / 2, ceiling * (0.5 + 0.5 * u))
