"""A Secrets Manager secret as rotation acts on it: a VersionStore whose versions carry staging labels
(protocols.StagedVersions), acting as one role session.

A version Rotor writes gets a ClientRequestToken derived from the rotation's id (values.version_token), so
a write repeated after a crash creates nothing new, and is labelled AWSPENDING and rotor-<version> (Rotor's
keep label). promote moves AWSCURRENT to it (AWS moves AWSPREVIOUS to the version it left); destroy
removes a version's labels, after which AWS deletes it on its own schedule (AWS has no per-version
delete). Custom metadata lives in the secret's tags.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from rotor.backends.aws import values
from rotor.backends.aws.values import CURRENT, PENDING, kept_label
from rotor.backends.protocols import InvalidSpec, NotFound, Unavailable, VersionConflict

# (operation, fn(client)) -> the answer, called as the handle's role session on its connection.
Call = Callable[[str, Callable[[Any], Any]], Awaitable[Any]]


class SecretsManagerSecret:
    """VersionStore and StagedVersions on one Secrets Manager secret."""

    def __init__(self, call: Call, *, where: str, actor: str, secret_id: str, fmt: str) -> None:
        self._call, self._id, self._format = call, secret_id, fmt
        self._where, self._actor = where, actor
        self._typed: Any = None  # the JSON of the version last read: the next write keeps its value types

    @property
    def where(self) -> str:
        return self._where

    @property
    def actor(self) -> str:
        return self._actor

    def __repr__(self) -> str:
        return f"SecretsManagerSecret({self._where})"

    # -- reading ------------------------------------------------------------------------------------

    async def read_version(self, version: str | None = None) -> tuple[dict[str, str], str | None]:
        if version is not None and not values.plausible_version(version):
            raise NotFound(f"{self._where} has no version {version}")
        args: dict[str, Any] = {"SecretId": self._id}
        args.update({"VersionId": version} if version is not None else {"VersionStage": CURRENT})
        try:
            answer = await self._call("GetSecretValue", lambda c: c.get_secret_value(**args))
        except NotFound:
            if version is None:
                return {}, None
            raise
        if version is not None and not answer.get("VersionStages"):
            raise NotFound(f"{self._where} version {version} is retired (it has no staging label)")
        binary = answer.get("SecretBinary")
        data, typed = values.as_strings(self._id, self._format, answer.get("SecretString"),
                                        bytes(binary) if binary is not None else None)
        if version is None:
            self._typed = typed
        return data, str(answer["VersionId"])

    async def _versions(self, deprecated: bool = False) -> list[dict[str, Any]]:
        """Every version (with its labels and creation time), oldest first; [] when there is no secret."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"SecretId": self._id, "MaxResults": 100, "IncludeDeprecated": deprecated}
            if token:
                args["NextToken"] = token
            try:
                page = await self._call("ListSecretVersionIds", _listing(args))
            except NotFound:
                return []
            except Unavailable:
                if not found and not await self._exists():  # moto answers HTTP 500 for a missing secret
                    return []
                raise
            found.extend(page.get("Versions") or ())
            token = page.get("NextToken")
            if not token:
                break
        # AWS lists in no promised order; a stable sort keeps the listing's order for equal times.
        return sorted(found, key=lambda v: _utc(v.get("CreatedDate")) or datetime.datetime.min.replace(
            tzinfo=datetime.UTC))

    async def list_versions(self) -> list[str]:
        return [str(v["VersionId"]) for v in await self._versions() if v.get("VersionStages")]

    async def version_created(self, version: str) -> datetime.datetime | None:
        for v in await self._versions(deprecated=True):
            if v["VersionId"] == version:
                return _utc(v.get("CreatedDate"))
        return None

    async def custom_metadata(self) -> dict[str, str]:
        try:
            answer = await self._call("DescribeSecret", lambda c: c.describe_secret(SecretId=self._id))
        except NotFound:
            return {}
        return {str(t["Key"]): str(t.get("Value") or "") for t in answer.get("Tags") or ()}

    # -- writing ------------------------------------------------------------------------------------

    async def write_version(self, data: Mapping[str, str], cas: str) -> str:
        """A new current version after CAS: staged under a fresh token, then promoted. Secrets Manager has
        no check-and-set, so CAS is compared with AWSCURRENT just before (a write in between is not seen)."""
        exists = await self._exists()
        current = _current(await self._versions()) if exists else None
        if (current or "0") != cas:
            raise VersionConflict(f"{self._where}: version {cas} is not the current one")
        if not exists:
            token = str(uuid.uuid4())
            string = values.encode(self._id, self._format, data, None)
            await self._call("CreateSecret", lambda c: c.create_secret(
                Name=self._id, SecretString=string, ClientRequestToken=token))
            return token
        version = await self._put(data, str(uuid.uuid4()))
        await self.promote(version)
        return version

    async def stage_version(self, data: Mapping[str, str], key: str) -> str:
        token = values.version_token(self._id, key)
        if await self.staged_version(key) is None:
            await self._put(data, token)
        return token

    async def staged_version(self, key: str) -> str | None:
        token = values.version_token(self._id, key)
        return token if any(v["VersionId"] == token for v in await self._versions(deprecated=True)) else None

    async def promote(self, version: str) -> None:
        listed = await self._versions()
        labels = {str(v["VersionId"]): list(v.get("VersionStages") or ()) for v in listed}
        if version not in labels:
            raise NotFound(f"{self._where} has no version {version}")
        current = _current(listed)
        if current is not None and current != version:
            # Keep the version readers leave labelled as Rotor's (AWSPREVIOUS moves on at the next rotation).
            if kept_label(current) not in labels[current]:
                await self._label(kept_label(current), move_to=current)
            await self._label(CURRENT, move_to=version, remove_from=current)
        if PENDING in labels[version]:
            await self._label(PENDING, remove_from=version)

    async def destroy_versions(self, versions: Sequence[str]) -> None:
        if not versions:
            return
        labels = {str(v["VersionId"]): list(v.get("VersionStages") or ()) for v in await self._versions()}
        for version in versions:
            if CURRENT in labels.get(version, ()):
                raise InvalidSpec(f"{self._where}: version {version} is AWSCURRENT and cannot be retired")
            for label in labels.get(version, ()):
                await self._label(label, remove_from=version)

    async def set_custom_metadata(self, changes: Mapping[str, str]) -> None:
        removed = [k for k, v in changes.items() if not v]
        added = [{"Key": k, "Value": v} for k, v in changes.items() if v]
        if removed:
            await self._call("UntagResource", lambda c: c.untag_resource(SecretId=self._id, TagKeys=removed))
        if added:
            await self._call("TagResource", lambda c: c.tag_resource(SecretId=self._id, Tags=added))

    # -- internals ----------------------------------------------------------------------------------

    async def _exists(self) -> bool:
        try:
            await self._call("DescribeSecret", lambda c: c.describe_secret(SecretId=self._id))
        except NotFound:
            return False
        return True

    async def _put(self, data: Mapping[str, str], token: str) -> str:
        """DATA as a pending version with id TOKEN (a repeat with the same TOKEN and data is a no-op)."""
        string = values.encode(self._id, self._format, data, self._typed)
        stages = [PENDING, kept_label(token)]
        await self._call("PutSecretValue", lambda c: c.put_secret_value(
            SecretId=self._id, SecretString=string, ClientRequestToken=token, VersionStages=stages))
        return token

    async def _label(self, label: str, *, move_to: str | None = None, remove_from: str | None = None) -> None:
        args: dict[str, Any] = {"SecretId": self._id, "VersionStage": label}
        if move_to:
            args["MoveToVersionId"] = move_to
        if remove_from:
            args["RemoveFromVersionId"] = remove_from
        await self._call("UpdateSecretVersionStage", lambda c: c.update_secret_version_stage(**args))


def _listing(args: dict[str, Any]) -> Callable[[Any], Any]:
    return lambda client: client.list_secret_version_ids(**args)


def _current(listed: list[dict[str, Any]]) -> str | None:
    return next((str(v["VersionId"]) for v in listed if CURRENT in (v.get("VersionStages") or ())), None)


def _utc(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return None
