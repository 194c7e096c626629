"""The one time helper: RFC 3339 in and out, always UTC (Kubernetes, Vault and status all use it)."""

from __future__ import annotations

import datetime
import re

UTC = datetime.UTC
_FRACTION = re.compile(r"[0-9]*")


def now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def iso(moment: datetime.datetime, *, millis: bool = False) -> str:
    """RFC 3339 in UTC with a Z: whole seconds (status times), or milliseconds (incident timelines,
    compared at sub-second scale)."""
    moment = moment.astimezone(UTC)
    if millis:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return iso(now())


def parse(text: str) -> datetime.datetime:
    """RFC 3339 with any fraction (Vault writes nanoseconds; Python takes microseconds), as UTC.
    A time without a zone is taken as UTC. Raises ValueError on anything else."""
    head, _, rest = text.strip().replace("Z", "+00:00").replace("z", "+00:00").partition(".")
    if rest:
        digits = _FRACTION.match(rest)
        fraction = digits.group(0) if digits else ""
        zone = rest[len(fraction):]
        parsed = datetime.datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}{zone}")
    else:
        parsed = datetime.datetime.fromisoformat(head)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def parse_optional(text: str | None) -> datetime.datetime | None:
    """parse(), or None for an empty or unreadable time (a status field someone else wrote)."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        return None
