"""PostgresLoginCheck against the stack's PostgreSQL: the one word an incident's revocation check needs."""

from __future__ import annotations

import asyncio

from rotor.backends.postgres import PostgresLoginCheck
from rotor.backends.protocols import LoginCheck
from tests.devenv import StackInfo
from tests.devenv.process import free_port


def test_a_login_is_accepted_refused_or_not_asked(info: StackInfo) -> None:
    check = PostgresLoginCheck(timeout_seconds=2)
    assert isinstance(check, LoginCheck)

    async def main() -> list[str]:
        return [
            await check.try_login(info.pg_host, info.pg_port, "postgres", info.pg_user, info.pg_password),
            await check.try_login(info.pg_host, info.pg_port, "postgres", info.pg_user, "wrong-password"),
            await check.try_login(info.pg_host, info.pg_port, "postgres", "no_such_user", "whatever"),
            await check.try_login(info.pg_host, free_port(), "postgres", info.pg_user, info.pg_password),
        ]

    assert asyncio.run(main()) == ["accepted", "refused", "refused", "connection failed"]
