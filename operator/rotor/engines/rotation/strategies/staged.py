"""KV strategies on a store with staging labels (protocols.StagedVersions: AWS Secrets Manager).

publish puts the new value aside as a pending version whose id derives from the rotation's id (a crash
adopts it instead of writing another); it is not current yet. Readers move first: while the rotation
propagates and verifies, the SecretSource delivers the pending version (a pin, ports.VersionPins, set
again at each step so an operator restart keeps it). Once consumers run it, follow makes it current (the
old one stays readable as the previous version through the overlap window) and drops the pin. revoke
retires (unlabels) all but the current version and the newest keep-1 others; rollback drops the pin and
retires the new version: readers of the current version never left the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from rotor.backends.protocols import StagedVersions
from rotor.engines.ports import VersionPins
from rotor.engines.rotation.faults import fault_point

Values = dict[str, str]
PINNED = ("Propagating", "Verifying")  # phases in which readers get the pending version
PROMOTED = ("Overlapping", "Revoking")  # phases in which it is current


class Pin:
    """The SecretSource the rotation moves readers of (none: nobody to ask, e.g. in unit tests)."""

    def __init__(self, pins: VersionPins | None = None, namespace: str = "", name: str = "") -> None:
        self.pins, self.namespace, self.name = pins, namespace, name

    def __call__(self, version: str | None) -> None:
        if self.pins is not None:
            self.pins.pin_version(self.namespace, self.name, version)


async def publish(store: StagedVersions, rotation_id: str,
                  new_data: Callable[[Mapping[str, str]], Mapping[str, str]]) -> Values:
    """The new version of rotation ROTATION_ID (NEW_DATA of the current one), pending only."""
    version = await store.staged_version(rotation_id)
    if version is None:
        data, _ = await store.read_version()
        version = await store.stage_version(new_data(data), rotation_id)
    fault_point("Publishing", "staged")  # pending, not recorded yet: the crash test's moment
    return {"version": version}


async def follow(store: StagedVersions, pin: Pin, phase: str, new: Mapping[str, str]) -> None:
    """What readers get in PHASE (idempotent, asked at every step): the pending version NEW while it
    propagates and verifies; from Overlapping on it is current and the spec's label serves it."""
    version = new.get("version")
    if not version:
        return
    if phase in PINNED:
        pin(version)
    elif phase in PROMOTED:
        await promote(store, version)
        pin(None)


async def promote(store: StagedVersions, version: str) -> None:
    """VERSION becomes current (a no-op once it is; skipped when it was retired meanwhile)."""
    _, current = await store.read_version()
    if current != version and version in await store.list_versions():
        await store.promote(version)


async def retire(store: StagedVersions, keep: int, pin: Pin, new: Mapping[str, str]) -> None:
    """Unlabel every version but the current one and the newest KEEP-1 others (idempotent)."""
    if new.get("version"):
        await promote(store, new["version"])  # a crash between Verifying and Overlapping skipped it
    pin(None)
    _, current = await store.read_version()
    others = [v for v in await store.list_versions() if v != current]
    await store.destroy_versions(others[:max(0, len(others) - (keep - 1))])


async def rollback(store: StagedVersions, pin: Pin, old: Mapping[str, str], new: Mapping[str, str]) -> None:
    """Readers get the old version back (the current one, unless the new one was promoted); the new one
    is retired."""
    pin(None)
    new_version, old_version = new.get("version"), old.get("version")
    if not new_version:
        return
    _, current = await store.read_version()
    if current == new_version and old_version not in (None, "0"):
        assert old_version is not None
        await store.promote(old_version)
    if new_version in await store.list_versions():
        await store.destroy_versions([new_version])
