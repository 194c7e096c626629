"""KV strategies on a store with staging labels (protocols.StagedVersions: AWS Secrets Manager).

publish puts the new value aside as a pending version whose id derives from the rotation's id, then makes
it current: readers of the current version (the SecretSource, and workloads reading AWS directly) move to
it, the old one stays readable as the previous version through the overlap window. A crash between the
two adopts the pending version instead of writing another. revoke retires (unlabels) all but the current
version and the newest keep-1 others; rollback makes the old version current again and retires the new.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rotor.backends.protocols import StagedVersions
from rotor.engines.rotation.faults import fault_point

Values = dict[str, str]


async def publish(store: StagedVersions, rotation_id: str,
                  new_data: Callable[[Mapping[str, str]], Mapping[str, str]]) -> Values:
    """The new version of rotation ROTATION_ID (NEW_DATA of the current one), pending, then current."""
    version = await store.staged_version(rotation_id)
    if version is None:
        data, _ = await store.read_version()
        version = await store.stage_version(new_data(data), rotation_id)
    fault_point("Publishing", "staged")  # pending, not current yet: the crash test's moment
    await store.promote(version)
    return {"version": version}


async def retire(store: StagedVersions, keep: int) -> None:
    """Unlabel every version but the current one and the newest KEEP-1 others (idempotent)."""
    _, current = await store.read_version()
    others = [v for v in await store.list_versions() if v != current]
    await store.destroy_versions(others[:max(0, len(others) - (keep - 1))])


async def rollback(store: StagedVersions, old: Mapping[str, str], new: Mapping[str, str]) -> None:
    """Readers get the old version back; the new one is retired."""
    new_version, old_version = new.get("version"), old.get("version")
    if not new_version:
        return
    _, current = await store.read_version()
    if current == new_version and old_version not in (None, "0"):
        assert old_version is not None
        await store.promote(old_version)
    if new_version in await store.list_versions():
        await store.destroy_versions([new_version])
