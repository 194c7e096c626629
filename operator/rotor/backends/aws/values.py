"""The pure parts of the AWS backend: which roles a namespace may name, session names, and how a secret
or parameters become properties. No I/O and no boto here, so all of it is unit-tested directly."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from rotor.backends.protocols import InvalidSpec

RAW_PROPERTY = "value"  # the property a Raw Secrets Manager secret is offered under
_SESSION_CHARS = re.compile(r"[^A-Za-z0-9+=,.@_-]")  # what STS accepts in a RoleSessionName
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # what the API server accepts as a Secret key
_VERSION_ID = re.compile(r"^[A-Za-z0-9-]+$")


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


# -- rotation: versions Rotor writes --------------------------------------------------------------------

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
KEPT_PREFIX = "rotor-"  # a staging label Rotor puts on each version it keeps (versioned: N of them)
_TOKENS = uuid.UUID("6f1d2c3e-8a4b-4f7e-9c1d-2b3a4c5d6e7f")  # namespace of Rotor's ClientRequestTokens


def version_token(secret_id: str, key: str) -> str:
    """The ClientRequestToken (so the VersionId) of the version rotation KEY writes to SECRET_ID: the same
    on every retry, so a write repeated after a crash or a lost answer creates nothing new."""
    return str(uuid.uuid5(_TOKENS, f"{secret_id}\n{key}"))


def kept_label(version: str) -> str:
    """Rotor's own staging label on VERSION: it keeps the version labelled (AWS deletes unlabelled ones)
    after AWSPREVIOUS has moved on, until Rotor retires it."""
    return f"{KEPT_PREFIX}{version}"


def plausible_version(version: str) -> bool:
    """Whether VERSION can be a Secrets Manager VersionId at all (AWS refuses other ids outright)."""
    return 32 <= len(version) <= 64 and _VERSION_ID.fullmatch(version) is not None


def as_strings(secret_id: str, fmt: str, string: str | None, binary: bytes | None) -> tuple[dict[str, str], Any]:
    """A version's properties as text (what rotation works with) and its parsed JSON (to keep the types of
    values it leaves alone when it writes the next version)."""
    properties = secret_properties(secret_id, fmt, string, binary)
    try:
        data = {k: v.decode() for k, v in properties.items()}
    except UnicodeDecodeError:
        raise InvalidSpec(f"secret {secret_id} holds binary data: Rotor rotates text secrets only") from None
    return data, (json.loads(string) if fmt != "Raw" and string else None)


def encode(secret_id: str, fmt: str, data: Mapping[str, str], typed: Any) -> str:
    """DATA as the SecretString of a new version: a JSON object (a value unchanged from TYPED, the version
    it was read from, keeps its JSON type), or for Raw, the `value` property alone."""
    if fmt == "Raw":
        if set(data) != {RAW_PROPERTY}:
            raise InvalidSpec(f"secret {secret_id} has format Raw: rotation can only write its one property "
                              f"{RAW_PROPERTY!r} (set spec.generator.key to {RAW_PROPERTY})")
        return data[RAW_PROPERTY]
    old = typed if isinstance(typed, dict) else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        before = old.get(key)
        unchanged = before is not None and not isinstance(before, str) and (
            json.dumps(before, separators=(",", ":")) == value)
        out[key] = before if unchanged else value
    return json.dumps(out, separators=(",", ":"))


def acting_role(source_role_arn: str, role: str | None) -> str:
    """The role ARN an actor acts as: a RotationPolicy's identity.role names a role of the source role's
    account (the pattern of the connection still bounds it); none: the source's role."""
    if not role:
        return source_role_arn
    return f"{source_role_arn.split(':role/', 1)[0]}:role/{role}"
