"""The workload's own AWS identity: a ServiceAccount token exchanged for an IAM role's session (IRSA).

Per (connection, namespace, ServiceAccount, role ARN) Rotor requests a token for the connection's
audience (sts.amazonaws.com), calls AssumeRoleWithWebIdentity unsigned (the token is the credential),
and keeps the session until 80% of its lifetime has passed. Concurrent logins of one identity collapse
into one. The role's trust policy in AWS decides whether the ServiceAccount may assume it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rotor.backends.aws.connection import Connection, RoleSession
from rotor.backends.aws.values import session_name
from rotor.backends.protocols import BackendError, InvalidSpec, NotFound, PermissionDenied
from rotor.concurrency import SingleFlight
from rotor.observability.metrics import LOGINS, TOKEN_CACHE_HITS
from rotor.observability.secrecy import remember

# (namespace, service account, audience, seconds) -> (jwt, expiry); supplied by rotor.kube through wiring.
TokenRequester = Callable[[str, str, str, int], Awaitable[tuple[str, Any]]]

RENEW_MARGIN = 0.2  # log in again once 80% of a session's lifetime has passed
JWT_SECONDS = 600  # the shortest TokenRequest lifetime the API server grants; STS reads it at once


@dataclass(frozen=True)
class WebIdentity:
    connection: str
    namespace: str
    service_account: str
    role_arn: str

    @property
    def who(self) -> str:
        return f"role {self.role_arn} (ServiceAccount {self.namespace}/{self.service_account})"


class Logins:
    def __init__(self, request_token: TokenRequester) -> None:
        self._request_token = request_token
        self.sessions: dict[WebIdentity, RoleSession] = {}
        self._flight: SingleFlight[RoleSession] = SingleFlight()

    async def session(self, conn: Connection, identity: WebIdentity) -> tuple[RoleSession, bool]:
        """(session, whether it came from the cache)."""
        cached = self.sessions.get(identity)
        if cached is not None and time.monotonic() < cached.renew_at:
            TOKEN_CACHE_HITS.labels(conn.label).inc()
            return cached, True
        session, _ = await self._flight.do(identity, lambda: self._login(conn, identity))
        return session, False

    def forget(self, identity: WebIdentity) -> None:
        self.sessions.pop(identity, None)

    async def _login(self, conn: Connection, identity: WebIdentity) -> RoleSession:
        audience = conn.settings.audience
        jwt, _ = await self._request_token(identity.namespace, identity.service_account, audience, JWT_SECONDS)
        name = session_name(identity.namespace, identity.service_account)
        try:
            response = await conn.call("login", "sts", None, lambda c: c.assume_role_with_web_identity(
                RoleArn=identity.role_arn, RoleSessionName=name, WebIdentityToken=jwt,
                DurationSeconds=conn.settings.session_seconds), where=f"role {identity.role_arn}", who=identity.who)
        except BackendError as err:
            LOGINS.labels(conn.label, err.reason).inc()
            if isinstance(err, (PermissionDenied, InvalidSpec, NotFound)):
                raise PermissionDenied(
                    f"AWS STS refused AssumeRoleWithWebIdentity of role {identity.role_arn} for ServiceAccount "
                    f"{identity.namespace}/{identity.service_account}: {err.message}. The role's trust policy must "
                    f"allow sub system:serviceaccount:{identity.namespace}:{identity.service_account} and aud "
                    f"{audience} of this cluster's OIDC provider") from None
            raise
        LOGINS.labels(conn.label, "ok").inc()
        credentials = response["Credentials"]
        remember({k: str(credentials[k]).encode() for k in ("SecretAccessKey", "SessionToken")})  # mask if logged
        expiration = _utc(credentials.get("Expiration"), conn.settings.session_seconds)
        lifetime = max(0.0, (expiration - datetime.datetime.now(datetime.UTC)).total_seconds())
        session = RoleSession(str(credentials["AccessKeyId"]), str(credentials["SecretAccessKey"]),
                              str(credentials["SessionToken"]), expiration,
                              time.monotonic() + lifetime * (1 - RENEW_MARGIN))
        self.sessions[identity] = session
        return session


def _utc(value: Any, default_seconds: int) -> datetime.datetime:
    """botocore parses Expiration into an aware datetime; anything else: the lifetime Rotor asked for."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=default_seconds)
