"""The denylists incidents hold: enforced by the SecretSource engine (each with its scope), kept in
Rotor's own state until their incident is resolved.

The record is a data key of the HMAC key Secret in the operator's namespace (digests only, never a
value): the digests mean something only with that key, one backup holds both, and tenants cannot
write there. Deleting a LeakIncident object does not lift its list; resolving it does (or removing its
entry from the record, which Rotor re-reads every REFRESH seconds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from rotor.engines.ports import Sources
from rotor.kube import Kube, KubeError
from rotor.planning import incident_denylist as denylist
from rotor.planning import times
from rotor.planning.incident_denylist import Entry, Scope
from rotor.planning.sync import DesiredSecret, ObservedSecret, Owner

log = logging.getLogger("rotor.engines.incident.denylists")

REFRESH = 60.0  # seconds between re-reads of the record (a replica taking over, an operator's edit)
STORE = "denylists"  # the scheduler key of the refresh (incident keys are tuples)


def owner(uid: str) -> Hashable:
    """How the SecretSource engine knows an incident's denylist."""
    return ("incident", uid)


class Denylists:
    """The entries by incident UID: what the SecretSource engine enforces and what the record holds."""

    def __init__(self, kube: Kube, sources: Sources, *, namespace: str, secret: str,
                 operator_namespace: str) -> None:
        self._kube, self._sources = kube, sources
        self.namespace, self.secret, self.operator_namespace = namespace, secret, operator_namespace
        self.entries: dict[str, Entry] = {}
        self._unsaved: dict[str, Entry] = {}  # enforced, not yet in the record
        self._adopted: dict[str, Entry] = {}  # seen in an incident's status: recorded unless already there
        self._lock = asyncio.Lock()

    def scope(self, namespace: str, where: str | None) -> Scope:
        return denylist.scope_for(namespace, where, self.operator_namespace)

    # -- what the incident engine does ------------------------------------------------------------------

    async def put(self, uid: str, incident: str, scope: Scope, digests: frozenset[str]) -> None:
        """Enforce DIGESTS for incident UID at once, then record them (KubeError if the record cannot be
        written: the step is retried, the list is enforced meanwhile)."""
        entry = Entry(uid, incident, scope, digests, times.iso(times.now()))
        async with self._lock:
            previous = self.entries.get(uid)
            if previous is not None and previous.scope == scope and previous.digests == digests and \
                    uid not in self._unsaved:
                return
            self._enforce(entry)
            self._unsaved[uid] = entry
            await self._save()

    async def remove(self, uid: str) -> bool:
        """The incident is resolved: its list goes from the record, then stops being enforced."""
        async with self._lock:
            known = uid in self.entries
            self._unsaved.pop(uid, None)
            self._adopted.pop(uid, None)
            await self._save(drop=uid)  # then enforces exactly what the record holds
            return known

    def observe(self, body: Mapping[str, Any]) -> bool:
        """An incident as a watch shows it: an unresolved one's status denylist is enforced right away
        if it is not yet (a replica taking over before its next refresh). True: record it."""
        entry = denylist.from_status(body, self.operator_namespace, times.iso(times.now()))
        if entry is None or entry.uid in self.entries:
            return False
        self._enforce(entry)
        self._adopted[entry.uid] = entry
        return True

    # -- the record --------------------------------------------------------------------------------------

    async def load(self, listed: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
        """At start-up, before any sync: the record, plus the lists of unresolved incidents it does not
        hold yet (recorded now). Returns (incidents, digests)."""
        for body in listed:
            self.observe(body)
        await self.refresh()
        return len(self.entries), sum(len(e.digests) for e in self.entries.values())

    async def refresh(self) -> None:
        """Re-read the record (another replica's or an operator's changes) and save what is unsaved."""
        async with self._lock:
            if self._unsaved or self._adopted:
                await self._save()
                return
            secret, stored = await self._read()
            if secret is None:  # never taken as "no lists": what is enforced stays enforced
                raise self._missing()
            self._replace(stored)

    async def _read(self) -> tuple[ObservedSecret | None, dict[str, Entry]]:
        secret = await self._kube.read_secret(self.namespace, self.secret)
        if secret is None:
            return None, {}
        try:
            return secret, denylist.decode_store(secret.data.get(denylist.STORE_KEY))
        except denylist.StoreCorrupt as err:
            raise denylist.StoreCorrupt(f"Secret {self.namespace}/{self.secret}, data key {denylist.STORE_KEY}: "
                                        f"{err}; restore it from backup") from None

    def _missing(self) -> KubeError:
        return KubeError(404, "NotFound", f"Secret {self.namespace}/{self.secret} (the HMAC key and the denylists) "
                         "is missing: restore it from backup")

    async def _save(self, drop: str | None = None) -> None:
        """Merge the unsaved entries into the record (minus DROP), on its resourceVersion; then enforce
        exactly what it holds."""
        for _ in range(5):
            secret, stored = await self._read()
            if secret is None:
                raise self._missing()
            adopted, unsaved = dict(self._adopted), dict(self._unsaved)  # observe() may add while we write
            wanted = {**adopted, **stored, **unsaved}
            wanted.pop(drop or "", None)
            if wanted != stored:
                desired = DesiredSecret(self.secret, secret.type, {**secret.data, denylist.STORE_KEY:
                                                                   denylist.encode_store(wanted)}, {}, {}, False)
                try:
                    await self._kube.write_secret(self.namespace, "replace", desired,
                                                  Owner(self.namespace, self.secret, ""), secret)
                except KubeError as err:
                    if err.conflict:
                        continue  # someone else wrote: read and merge again
                    raise
            for pending, saved in ((self._adopted, adopted), (self._unsaved, unsaved)):
                for uid, entry in saved.items():
                    if pending.get(uid) is entry:
                        del pending[uid]
            self._replace(wanted)
            return
        raise KubeError(409, "Conflict", f"Secret {self.namespace}/{self.secret} kept changing: denylists not saved")

    def _replace(self, stored: Mapping[str, Entry]) -> None:
        """Enforce exactly STORED plus the entries not yet saved."""
        wanted = {**self._adopted, **stored, **self._unsaved}
        for uid in set(self.entries) - set(wanted):
            self._sources.set_denylist(owner(uid), frozenset(), None)
            self.entries.pop(uid)
        for entry in wanted.values():
            if self.entries.get(entry.uid) != entry:
                self._enforce(entry)

    def _enforce(self, entry: Entry) -> None:
        self.entries[entry.uid] = entry
        self._sources.set_denylist(owner(entry.uid), entry.digests, entry.scope)
