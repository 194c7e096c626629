"""The one check that talks to a database: does a (leaked) PostgreSQL login still work?

The only module that imports psycopg. The password goes to the database only; the answer is a word.
Callers dial only hosts the operator allow-listed (rotor.planning.incident.login_target). Checks run
on their own small thread pool, each bounded in time, so a slow or silent database holds up
neither the incident workers nor any other pool of the operator.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


class PostgresLoginCheck:
    """rotor.backends.protocols.LoginCheck for PostgreSQL."""

    def __init__(self, *, timeout_seconds: int = 5, workers: int = 2) -> None:
        self._timeout = max(2, timeout_seconds)  # libpq's connect_timeout has a 2 s minimum
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="rotor-login-check")

    async def try_login(self, host: str, port: int, dbname: str, user: str, password: str) -> str:
        loop = asyncio.get_running_loop()
        attempt = loop.run_in_executor(self._pool, _try_login, host, port, dbname, user, password, self._timeout)
        try:
            # A little over connect_timeout: libpq may try several addresses of one name in turn.
            return await asyncio.wait_for(attempt, self._timeout * 2 + 1)
        except TimeoutError:
            return "timed out"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _try_login(host: str, port: int, dbname: str, user: str, password: str, timeout: int) -> str:
    """accepted, refused, or why the database could not be asked."""
    import psycopg

    try:
        with psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password,
                             connect_timeout=timeout, options=f"-c statement_timeout={timeout * 1000}") as conn:
            conn.execute("SELECT 1")
        return "accepted"
    except psycopg.OperationalError as exc:
        text = str(exc)
        if getattr(exc, "sqlstate", None) in ("28P01", "28000") or "authentication failed" in text or \
                "does not exist" in text:
            return "refused"
        return "connection failed"
