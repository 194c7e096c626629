"""The one check that talks to a database: does a (leaked) PostgreSQL login still work?

The only module that imports psycopg. The password goes to the database only; the answer is a word.
"""

from __future__ import annotations

import asyncio


class PostgresLoginCheck:
    """rotor.backends.protocols.LoginCheck for PostgreSQL."""

    def __init__(self, *, timeout_seconds: int = 3) -> None:
        self._timeout = timeout_seconds

    async def try_login(self, host: str, port: int, dbname: str, user: str, password: str) -> str:
        return await asyncio.to_thread(_try_login, host, port, dbname, user, password, self._timeout)


def _try_login(host: str, port: int, dbname: str, user: str, password: str, timeout: int) -> str:
    """accepted, refused, or why the database could not be asked."""
    import psycopg

    try:
        with psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password,
                             connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
        return "accepted"
    except psycopg.OperationalError as exc:
        text = str(exc)
        if getattr(exc, "sqlstate", None) in ("28P01", "28000") or "authentication failed" in text or \
                "does not exist" in text:
            return "refused"
        return "connection failed"
