"""One named AWS connection: its botocore clients, flow control, metrics and error translation.

botocore is imported by the first connection made (5 MiB of RSS an operator without AWS connections does
not carry). It is synchronous, so calls run in a thread; a semaphore bounds concurrency and a token bucket the
rate, as for Vault. Clients are made from explicit credentials only (an assumed role's session), or
unsigned for STS: botocore never looks up credentials of its own (environment, files, instance metadata).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rotor.backends.aws.errors import error_code, translate
from rotor.backends.protocols import InvalidSpec, Unavailable
from rotor.concurrency import TokenBucket
from rotor.config import AwsConnection
from rotor.observability.metrics import BACKEND_REQUESTS, BACKEND_SECONDS, BACKEND_UP

T = TypeVar("T")
# botocore logs request parameters (the web identity token) and response bodies (secret values) at DEBUG,
# before Rotor has seen, let alone registered for masking, a value: keep it quiet at every log level.
logging.getLogger("botocore").setLevel(logging.WARNING)


@dataclass
class RoleSession:
    """Credentials of one assumed-role session (memory only, never logged) and the clients made from them."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime.datetime
    renew_at: float  # time.monotonic() after which Rotor logs in again
    clients: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"RoleSession(expiration={self.expiration.isoformat()})"


class Connection:
    def __init__(self, name: str, settings: AwsConnection) -> None:
        self.name = name
        self.settings = settings
        self.label = f"aws:{name}"  # the `backend` metric label: distinct from a Vault connection's name
        self.limit = asyncio.Semaphore(settings.max_concurrency)
        self.bucket = TokenBucket(settings.rate_per_second)
        import botocore.config
        import botocore.session

        self._session = botocore.session.Session()
        self._lock = threading.Lock()  # botocore sessions are not thread-safe; clients are
        self._sts: Any = None
        self._config = botocore.config.Config(
            region_name=settings.region, connect_timeout=settings.timeout_seconds,
            read_timeout=settings.timeout_seconds, max_pool_connections=settings.max_concurrency,
            retries={"total_max_attempts": 2, "mode": "standard"}, user_agent_extra="rotor",
            # Endpoints come from this connection only, never from AWS_ENDPOINT_URL* or config files.
            ignore_configured_endpoint_urls=True)

    def _verify(self) -> str | bool:
        return str(self.settings.ca_file) if self.settings.ca_file else True

    def client(self, service: str, session: RoleSession | None) -> Any:
        """SERVICE's client acting as SESSION; None: the unsigned STS client (AssumeRoleWithWebIdentity
        needs no credentials: the web identity token is the credential)."""
        import botocore.config
        from botocore import UNSIGNED

        with self._lock:
            if session is None:
                if self._sts is None:
                    self._sts = self._session.create_client(
                        "sts", endpoint_url=self.settings.sts_endpoint_url or self.settings.endpoint_url,
                        verify=self._verify(), config=self._config.merge(
                            botocore.config.Config(signature_version=UNSIGNED)))
                return self._sts
            made = session.clients.get(service)
            if made is None:
                made = session.clients[service] = self._session.create_client(
                    service, endpoint_url=self.settings.endpoint_url, verify=self._verify(), config=self._config,
                    aws_access_key_id=session.access_key_id, aws_secret_access_key=session.secret_access_key,
                    aws_session_token=session.session_token)
            return made

    async def call(self, operation: str, service: str, session: RoleSession | None, fn: Callable[[Any], T], *,
                   where: str, who: str) -> T:
        """FN(client) in a thread, flow-controlled and measured; AWS errors become BackendErrors."""
        import botocore.exceptions

        await self.bucket.acquire()
        async with self.limit:
            started = time.monotonic()
            code = "error"
            try:
                result = await asyncio.to_thread(lambda: fn(self.client(service, session)))
                code = "200"
                BACKEND_UP.labels(self.label).set(1)
                return result
            except botocore.exceptions.ClientError as exc:
                aws_code, status = error_code(exc.response)
                code = str(status or aws_code)
                BACKEND_UP.labels(self.label).set(0 if status >= 500 else 1)
                raise translate(aws_code, status, operation, where, who) from None
            except botocore.exceptions.ParamValidationError:
                raise InvalidSpec(f"AWS client refused the parameters of {operation} on {where}; check spec.aws"
                                  ) from None
            except botocore.exceptions.BotoCoreError as exc:  # no answer: refused, timed out, cut off
                BACKEND_UP.labels(self.label).set(0)
                raise Unavailable(f"AWS connection {self.name!r} unreachable during {operation} on {where}: "
                                  f"{type(exc).__name__}") from None
            finally:
                BACKEND_REQUESTS.labels(self.label, operation, code).inc()
                BACKEND_SECONDS.labels(self.label, operation).observe(time.monotonic() - started)

    def close(self, sessions: list[RoleSession]) -> None:
        """Close the STS client and SESSIONS' clients (a replaced session's clients are left to the
        garbage collector: a call may still be using them)."""
        with self._lock:
            for client in [self._sts, *(c for s in sessions for c in s.clients.values())]:
                if client is not None:
                    client.close()
            self._sts = None
            for session in sessions:
                session.clients.clear()
