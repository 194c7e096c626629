"""AWS backend: Secrets Manager and SSM Parameter Store, read as the tenant's IAM role.

A SecretSource names a connection (region and endpoints come from the operator's config) and a role ARN
the connection's pattern allows for its namespace; Rotor assumes that role with the source's
ServiceAccount token (rotor.backends.aws.identity) and reads with the role's session only. Rotor's own
AWS credentials, if it has any, are never used. `bind` gives a Secrets Manager secret as a VersionStore with
staging labels (rotor.backends.aws.secrets), acting as the actor's role; SSM parameters: read-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from rotor.api.aws import AwsSource, ParameterStoreRef, SecretsManagerRef
from rotor.api.capabilities import Capability
from rotor.api.secretsource import SecretSourceSpec
from rotor.backends.aws.connection import Connection, RoleSession
from rotor.backends.aws.errors import StaleCredentials
from rotor.backends.aws.identity import Logins, TokenRequester, WebIdentity
from rotor.backends.aws.secrets import SecretsManagerSecret
from rotor.backends.aws.values import (
    acting_role,
    check_keys,
    check_role,
    parameter_property,
    path_properties,
    secret_properties,
)
from rotor.backends.protocols import Actor, InvalidSpec, NotFound
from rotor.concurrency import SingleFlight
from rotor.config import AwsConnection
from rotor.observability.metrics import COLLAPSED_READS
from rotor.observability.secrecy import remember
from rotor.planning.sync import Fetched

T = TypeVar("T")
MAX_PARAMETERS = 500  # a Kubernetes Secret holds at most 1 MiB: a path with more is a mistake
DEFAULT_STAGE = "AWSCURRENT"


@dataclass(frozen=True)
class AwsSecret:
    """A handle on SSM parameters: a location and who reads them, nothing to act on."""

    where: str
    actor: str


class AwsBackend:
    provider: ClassVar[str] = "aws"
    # WRITE_VERSION and VERSIONS: Secrets Manager only (an SSM handle is read-only; rotation says so).
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.READ, Capability.WRITE_VERSION, Capability.VERSIONS})

    def __init__(self, connections: dict[str, AwsConnection], request_token: TokenRequester) -> None:
        self._connections = {name: Connection(name, c) for name, c in connections.items()}
        self._logins = Logins(request_token)
        self._reads: SingleFlight[Fetched] = SingleFlight()

    def describe(self, namespace: str, spec: SecretSourceSpec) -> str:
        source = _aws(spec)
        return f"aws:{source.connection}/{_what(source)}"

    def bind(self, namespace: str, spec: SecretSourceSpec,
             actor: Actor | None = None) -> AwsSecret | SecretsManagerSecret:
        """The source's Secrets Manager secret acting as ACTOR (its ServiceAccount; its role: a role name of
        the source role's account); SSM parameters: read-only."""
        source = _aws(spec)
        where = self.describe(namespace, spec)
        service_account = (actor and actor.service_account) or spec.service_account_name
        ref = source.secrets_manager
        if ref is None:
            return AwsSecret(where, f"{namespace}/{service_account}")
        conn = self._connection(source.connection)
        role_arn = acting_role(source.role_arn, actor.role if actor else None)
        check_role(conn.settings.role_arn_pattern, namespace, role_arn, conn.name)
        identity = WebIdentity(conn.name, namespace, service_account, role_arn)
        subject = f"Secrets Manager secret {ref.secret_id}"

        async def call(operation: str, fn: Callable[[Any], Any]) -> Any:
            return await self._as(conn, identity, lambda session: conn.call(
                operation, "secretsmanager", session, fn, where=subject, who=identity.who))

        return SecretsManagerSecret(call, where=where, actor=f"{namespace}/{service_account}",
                                    secret_id=ref.secret_id, fmt=ref.format)

    async def fetch(self, namespace: str, spec: SecretSourceSpec) -> Fetched:
        source = _aws(spec)
        conn = self._connection(source.connection)
        check_role(conn.settings.role_arn_pattern, namespace, source.role_arn, conn.name)
        identity = WebIdentity(conn.name, namespace, spec.service_account_name, source.role_arn)
        key = (identity, source.secrets_manager, source.parameter_store)
        fetched, shared = await self._reads.do(key, lambda: self._as(conn, identity, lambda session: self._read(
            conn, session, identity, source)))
        if shared:
            COLLAPSED_READS.labels(conn.label).inc()
        check_keys(fetched.values, bool(spec.data), self.describe(namespace, spec))
        return fetched

    async def close(self) -> None:
        for conn in self._connections.values():
            conn.close([s for i, s in self._logins.sessions.items() if i.connection == conn.name])

    # -- internals ------------------------------------------------------------------------------

    def _connection(self, name: str) -> Connection:
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(sorted(self._connections)) or "none configured"
            raise InvalidSpec(f"spec.aws.connection {name!r} is not an AWS connection of this operator "
                              f"(known: {known}); ask the platform team or fix the name") from None

    async def _as(self, conn: Connection, identity: WebIdentity,
                  action: Callable[[RoleSession], Awaitable[T]]) -> T:
        """ACTION with IDENTITY's session. Cached credentials AWS no longer accepts (expired early, revoked)
        get one fresh login; credentials just issued and refused are a real denial."""
        for attempt in (1, 2):
            session, cached = await self._logins.session(conn, identity)
            try:
                return await action(session)
            except StaleCredentials:
                if attempt == 2 or not cached:
                    raise
                self._logins.forget(identity)
        raise AssertionError("unreachable")

    async def _read(self, conn: Connection, session: RoleSession, identity: WebIdentity,
                    source: AwsSource) -> Fetched:
        if source.secrets_manager is not None:
            return await self._secret(conn, session, identity, source.secrets_manager)
        assert source.parameter_store is not None  # the CRD and AwsSource require one of the two
        ref = source.parameter_store
        if ref.name is not None:
            return await self._parameter(conn, session, identity, ref.name, ref.version)
        assert ref.path is not None
        return await self._path(conn, session, identity, ref)

    async def _secret(self, conn: Connection, session: RoleSession, identity: WebIdentity,
                      ref: SecretsManagerRef) -> Fetched:
        args: dict[str, Any] = {"SecretId": ref.secret_id}
        if ref.version_id:
            args["VersionId"] = ref.version_id
        else:
            args["VersionStage"] = ref.version_stage or DEFAULT_STAGE
        pinned = ref.version_id or args["VersionStage"]
        where = f"Secrets Manager secret {ref.secret_id} (version {pinned})"
        response = await conn.call("GetSecretValue", "secretsmanager", session,
                                   lambda c: c.get_secret_value(**args), where=where, who=identity.who)
        binary = response.get("SecretBinary")
        values = secret_properties(ref.secret_id, ref.format, response.get("SecretString"),
                                   bytes(binary) if binary is not None else None)
        return Fetched(remember(values), str(response.get("VersionId") or "") or None)

    async def _parameter(self, conn: Connection, session: RoleSession, identity: WebIdentity, name: str,
                         version: int | None) -> Fetched:
        selector = f"{name}:{version}" if version else name
        where = f"SSM parameter {name}" + (f" (version {version})" if version else "")
        response = await conn.call("GetParameter", "ssm", session, lambda c: c.get_parameter(
            Name=selector, WithDecryption=True), where=where, who=identity.who)
        parameter = response["Parameter"]
        return Fetched(remember({parameter_property(name): str(parameter["Value"]).encode()}),
                       str(parameter.get("Version") or "") or None)

    async def _path(self, conn: Connection, session: RoleSession, identity: WebIdentity,
                    ref: ParameterStoreRef) -> Fetched:
        assert ref.path is not None
        path = ref.path
        where = f"SSM parameters under {path}"
        found: list[tuple[str, str]] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Path": path.rstrip("/") or "/", "Recursive": True, "WithDecryption": True}
            if token:
                args["NextToken"] = token
            page = await conn.call("GetParametersByPath", "ssm", session, _by_path(args), where=where,
                                   who=identity.who)
            found.extend((str(p["Name"]), str(p["Value"])) for p in page.get("Parameters") or ())
            if len(found) > MAX_PARAMETERS:
                raise InvalidSpec(f"spec.aws.parameterStore.path: more than {MAX_PARAMETERS} parameters under "
                                  f"{path}; name a narrower path")
            token = page.get("NextToken")
            if not token:
                break
        if not found:
            raise NotFound(f"AWS has no SSM parameters under {path} (or the role may not list them); check "
                           "spec.aws.parameterStore.path")
        return Fetched(remember(path_properties(path, found)), None)


def _by_path(args: dict[str, Any]) -> Callable[[Any], Any]:
    return lambda client: client.get_parameters_by_path(**args)


def _what(source: AwsSource) -> str:
    if source.secrets_manager is not None:
        return f"secretsmanager/{source.secrets_manager.secret_id}"
    ref = source.parameter_store
    return f"ssm/{((ref.name or ref.path or '') if ref is not None else '').lstrip('/')}"


def _aws(spec: SecretSourceSpec) -> AwsSource:
    if spec.aws is None:
        raise InvalidSpec("spec.aws is required when spec.provider is aws")
    return spec.aws
