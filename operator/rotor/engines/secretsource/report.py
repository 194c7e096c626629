"""A sync's outcome, told: status (written only when it changes), the Ready gauge, and an Event for each
change and each new failure. What to say is planned in planning.sync_status; the ChangeFeed condition
comes from the backstop (the source's Vault connection's change feed, if it has one)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from rotor.engines.secretsource.backstop import Backstop
from rotor.engines.secretsource.view import PLURAL, Key, SourceState
from rotor.kube import Kube, KubeError
from rotor.observability.secrecy import mask
from rotor.planning import times
from rotor.planning.sync import SyncPlan
from rotor.planning.sync_status import StatusPlan, ready_label, still_synced, sync_status

log = logging.getLogger("rotor.sync")


class Reporter:
    """Writes what one sync of a SecretSource came to; COUNT_READY keeps the rotor_secretsources gauge."""

    def __init__(self, kube: Kube, backstop: Backstop, count_ready: Callable[[Key, tuple[str, str] | None], None]
                 ) -> None:
        self.kube, self.backstop, self.count_ready = kube, backstop, count_ready

    async def __call__(self, state: SourceState, plan: SyncPlan, delay: float | None, *, notice: str = "",
                       certificate: dict[str, str] | None = None) -> None:
        old = state.status
        if certificate is None and still_synced(old, plan, generation=state.generation, notice=notice):
            planned = StatusPlan(None, None)  # an unchanged refresh: no status is built
        else:
            # Messages are built from keys and error classes, never values; the masker is the backstop for
            # status and Events, which readers without Secret rights see (the log filter covers logs).
            plan = dataclasses.replace(plan, message=mask(plan.message))
            planned = sync_status(old, plan, generation=state.generation, now=times.now(), delay=delay,
                                  notice=notice)
        patch = planned.patch
        if certificate is not None and certificate != old.get("certificate"):  # spec.vault.pki: a new one
            patch = {**(patch or {}), "certificate": certificate}
        feed = self.backstop.conditions(state, (patch or old).get("conditions") or [])
        if feed is not None:
            patch = {**(patch or {}), "conditions": feed}
        if patch is not None:
            try:
                await self.kube.patch_status(PLURAL, state.namespace, state.name, patch)
                state.status = {**old, **patch}
            except KubeError as err:
                if not err.not_found:
                    log.warning("status of SecretSource %s/%s not written: %s", state.namespace, state.name,
                                err.reason)
        # Counted before the awaits below: meanwhile a watch event older than our patch may replace
        # state.status for a moment (the event of our own patch follows it).
        self.count_ready((state.namespace, state.name), ready_label(state.status))
        if planned.event is not None:
            await self.kube.post_event(kind="SecretSource", namespace=state.namespace, name=state.name,
                                       uid=state.uid, type=planned.event.type, reason=planned.event.reason,
                                       message=planned.event.message)

    async def feed(self, state: SourceState) -> None:
        """The ChangeFeed condition alone, on a refresh the backstop let wait: written only when the feed's
        state changed since the source's last read (e.g. it was down then)."""
        conditions = self.backstop.conditions(state, state.status.get("conditions") or [])
        if conditions is None:
            return
        try:
            await self.kube.patch_status(PLURAL, state.namespace, state.name, {"conditions": conditions})
            state.status = {**state.status, "conditions": conditions}
        except KubeError as err:
            if not err.not_found:
                log.warning("status of SecretSource %s/%s not written: %s", state.namespace, state.name, err.reason)
