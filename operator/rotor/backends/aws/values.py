"""The pure parts of the AWS backend: which roles a namespace may name, session names, and how a secret
or parameters become properties. No I/O and no boto here, so all of it is unit-tested directly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from rotor.backends.protocols import InvalidSpec

RAW_PROPERTY = "value"  # the property a Raw Secrets Manager secret is offered under
_SESSION_CHARS = re.compile(r"[^A-Za-z0-9+=,.@_-]")  # what STS accepts in a RoleSessionName
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # what the API server accepts as a Secret key


def session_name(namespace: str, service_account: str) -> str:
    """rotor-<namespace>-<serviceaccount>, as CloudTrail shows who read: STS's characters, at most 64."""
    return _SESSION_CHARS.sub("-", f"rotor-{namespace}-{service_account}")[:64]


def role_allowed(pattern: str, namespace: str, role_arn: str) -> bool:
    """Does ROLE_ARN match the connection's pattern in full, {namespace} standing for NAMESPACE?"""
    return re.fullmatch(pattern.replace("{namespace}", re.escape(namespace)), role_arn) is not None


def check_role(pattern: str, namespace: str, role_arn: str, connection: str) -> None:
    if not role_allowed(pattern, namespace, role_arn):
        raise InvalidSpec(f"spec.aws.roleArn {role_arn} is not a role namespace {namespace} may use through AWS "
                          f"connection {connection!r} (it must match {pattern.replace('{namespace}', namespace)}); "
                          "ask the platform team for a role of your namespace")


def secret_properties(secret_id: str, fmt: str, string: str | None, binary: bytes | None) -> dict[str, bytes]:
    """A Secrets Manager secret as properties: its JSON object's top-level keys, or Raw: all of it as `value`.
    Errors name the secret and what to change, never a part of the value."""
    raw = binary if binary is not None else (string or "").encode()
    if fmt == "Raw":
        return {RAW_PROPERTY: raw}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidSpec(f"spec.aws.secretsManager.format: secret {secret_id} does not hold a JSON object; set "
                          "format Raw to take it whole")
    return {str(k): v.encode() if isinstance(v, str) else json.dumps(v, separators=(",", ":")).encode()
            for k, v in parsed.items()}


def parameter_property(name: str) -> str:
    """The property of a single parameter: the last segment of its name (or ARN)."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def path_properties(path: str, parameters: Iterable[tuple[str, str]]) -> dict[str, bytes]:
    """Parameters (name, value) read under PATH as properties named by their names below PATH."""
    prefix = path if path.endswith("/") else path + "/"
    out: dict[str, bytes] = {}
    for name, value in parameters:
        relative = name[len(prefix):] if name.startswith(prefix) else parameter_property(name)
        out[relative] = value.encode()
    return out


def check_keys(properties: Mapping[str, bytes], mapped: bool, where: str) -> None:
    """Without spec.data every property becomes a Secret key: say which names cannot be one, and what to do."""
    if mapped:
        return
    bad = sorted(k for k in properties if not _SECRET_KEY.fullmatch(k))
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise InvalidSpec(f"{where} has properties that are not valid Secret keys ({shown}); map them to keys "
                          "with spec.data")
