"""Builds the operator's runtime from its settings: Kubernetes client, backends, engines, schedulers.

The one place that knows every concrete class. Handlers read the typed Runtime it returns (never an
untyped memo bag), and engines get what they need of each other as the ports in rotor.engines.ports.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rotor import GROUP, VERSION
from rotor.api import keys
from rotor.api.kinds import LEAK_INCIDENT, ROTATION_POLICY, SECRET_SOURCE, Kind
from rotor.backends.aws import AwsBackend
from rotor.backends.kubernetes import KubernetesBackend
from rotor.backends.postgres import PostgresLoginCheck
from rotor.backends.protocols import Backend, InvalidSpec, PermissionDenied, Unavailable
from rotor.backends.vault import VaultBackend
from rotor.config import Settings
from rotor.engines.changefeed import ChangeFeeds
from rotor.engines.delivery.worker import Reloader
from rotor.engines.incident.worker import Incidents
from rotor.engines.relist import Key, Relisted, Relister
from rotor.engines.rotation.worker import Rotator
from rotor.engines.scheduler import RefreshScheduler, crash_reporter
from rotor.engines.secretfeed import SecretFeed
from rotor.engines.secretsource.port import SourcesPort
from rotor.engines.secretsource.sandbox import ProcessRenderer
from rotor.engines.secretsource.worker import SecretSync
from rotor.engines.sourcefeed import SourceFeed
from rotor.kube import Kube, KubeError
from rotor.observability import metrics
from rotor.planning import times
from rotor.planning.incident_denylist import key_lost_message, key_use
from rotor.planning.podspec import BY_KIND, RESTARTABLE
from rotor.planning.reload import RateLimits
from rotor.planning.template import TemplateLimits

log = logging.getLogger("rotor")
KEY_FIELD = "hmac-key"  # the data key holding it in its Secret
RELIST_SECONDS = 300.0  # the re-list reconcile's backstop period


def build_backends(settings: Settings, kube: Kube) -> dict[str, Backend]:
    """One backend per provider name, as spec.provider names them."""

    async def request_token(namespace: str, service_account: str, audience: str,
                            seconds: int) -> tuple[str, datetime.datetime]:
        try:
            return await kube.request_token(namespace, service_account, audience, seconds)
        except KubeError as err:
            who = f"ServiceAccount {namespace}/{service_account}"
            if err.not_found:
                raise InvalidSpec(f"{who} does not exist: create it, or fix spec.serviceAccountName") from None
            if err.status == 403:
                raise PermissionDenied(f"Rotor may not request a token for {who}: {err.message}") from None
            raise Unavailable(f"token request for {who} failed: HTTP {err.status} {err.reason}") from None

    return {
        VaultBackend.provider: VaultBackend(settings.vault_connections, request_token),
        KubernetesBackend.provider: KubernetesBackend(kube.read_secret),
        AwsBackend.provider: AwsBackend(settings.aws_connections, request_token),
    }


@dataclass
class Runtime:
    """Everything the handlers reach: built once per operator start, stopped at shutdown."""

    config: Settings
    kube: Kube
    backends: Mapping[str, Backend]
    sync: SecretSync
    sync_scheduler: RefreshScheduler
    rotator: Rotator
    rotation_scheduler: RefreshScheduler
    incidents: Incidents
    incident_scheduler: RefreshScheduler
    reloader: Reloader
    gate: asyncio.Event | None  # set while this replica is active (peering); None when standalone
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    feeds: ChangeFeeds | None = None  # instant updates from Vault audit streams (opted-in connections)
    # Forgets what a watch gap deleted (re-lists bring no DELETED events); built by build().
    relist: Relister = field(default_factory=lambda: Relister((), interval=0))
    # Managed Secrets' metadata-only watch (not Kopf's: see rotor.engines.secretfeed); built by build().
    secret_feed: SecretFeed | None = None
    # SecretSources' watch (not Kopf's: see rotor.engines.sourcefeed); built by build().
    source_feed: SourceFeed | None = None

    @property
    def schedulers(self) -> tuple[RefreshScheduler, ...]:
        return (self.sync_scheduler, self.rotation_scheduler, self.incident_scheduler)

    async def load(self) -> None:
        """Before the first sync: every LeakIncident's denylist (a source synced before its incident
        would deliver the leaked value again), then every managed Secret (first syncs need no read)."""
        await self.incidents.load_denylists(self.config.namespaces)
        await self.sync.load_secrets(self.config.namespaces)

    def start(self) -> None:
        for scheduler in self.schedulers:
            scheduler.start()
        self.reloader.start()
        self.relist.start()
        if self.secret_feed is not None:
            self.secret_feed.start()
        if self.source_feed is not None:
            self.source_feed.start()
        if self.feeds is not None:
            self.feeds.start()
        if self.config.metrics_port:
            metrics.serve(self.config.metrics_port)

    async def stop(self) -> None:
        if self.source_feed is not None:
            await self.source_feed.stop()
        if self.secret_feed is not None:
            await self.secret_feed.stop()
        await self.relist.stop()
        if self.feeds is not None:
            await self.feeds.stop()
        await self.reloader.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for scheduler in reversed(self.schedulers):
            await scheduler.stop()
        await self.sync.close()  # its template renderer's child processes
        for backend in self.backends.values():
            await backend.close()
        await self.kube.close()


class HmacKeyLost(RuntimeError):
    """The HMAC key Secret is gone although digests made with it exist: Rotor does not start."""


async def hmac_key(kube: Kube, config: Settings) -> bytes:
    """The operator's HMAC key. Created once; never silently replaced once it was in use (a new key
    would make every denylist and digest stop matching): then start-up fails saying how to restore it."""
    namespace, name = config.operator_namespace, config.hmac_key_secret
    existing = await kube.read_secret(namespace, name)
    if (existing is None or KEY_FIELD not in existing.data) and not config.hmac_key_allow_new:
        scopes: list[str | None] = [*config.namespaces] or [None]
        for kind, plural in ((SECRET_SOURCE.kind, SECRET_SOURCE.plural), (LEAK_INCIDENT.kind, LEAK_INCIDENT.plural)):
            for scope in scopes:
                evidence = key_use(kind, await kube.list_objects(GROUP, VERSION, plural, scope))
                if evidence is not None:
                    raise HmacKeyLost(key_lost_message(namespace, name, evidence))
    if existing is not None and KEY_FIELD not in existing.data:
        raise HmacKeyLost(f"Secret {namespace}/{name} has no {KEY_FIELD}: restore it from backup, or delete the "
                          "Secret to start with a new key")
    return await kube.get_or_create_key(namespace, name, KEY_FIELD)


# The handler of a SecretSource's events (rotor.handlers.secretsource: handlers are above this module).
SourceHandler = Callable[[Runtime, str | None, Mapping[str, Any]], Awaitable[None]]


async def build(config: Settings, *, gate: asyncio.Event | None, on_source: SourceHandler | None = None) -> Runtime:
    """The runtime for CONFIG; GATE (when peering) pauses every scheduler while it is clear; ON_SOURCE
    gets every SecretSource event (None: SecretSources are not watched)."""
    kube = Kube()
    await kube.ensure_namespace(config.operator_namespace)
    key = await hmac_key(kube, config)
    backends = build_backends(config, kube)
    renderer = ProcessRenderer(TemplateLimits(config.template_seconds, config.template_output_bytes),
                               workers=config.template_workers)
    sync = SecretSync(kube, backends, key, renderer=renderer, min_refresh=config.min_refresh_seconds)
    sync_scheduler = RefreshScheduler(sync.sync, workers=config.sync_workers, gate=gate)
    # ROTOR_CLOCK_SKEW_SECONDS moves the rotation engine's clock (tests: decisions must hold with it off).
    skew = datetime.timedelta(seconds=float(os.environ.get("ROTOR_CLOCK_SKEW_SECONDS") or 0))
    rotator = Rotator(kube, backends, SourcesPort(sync, sync_scheduler), clock=lambda: times.now() + skew)
    rotation_scheduler = RefreshScheduler(rotator.step, workers=4, gate=gate, gauges=False)
    metrics.track_objects(sync.sources, rotator.policies, enabled=config.metrics_secret_names)
    # The incident engine owns its scheduler (it wakes incidents itself); the runtime starts and stops it.
    login_check = PostgresLoginCheck(timeout_seconds=config.login_check_timeout_seconds,
                                     workers=config.login_check_workers)
    incidents = Incidents(kube, backends, SourcesPort(sync, sync_scheduler), rotator, login_check,
                          state_namespace=config.operator_namespace, state_secret=config.hmac_key_secret,
                          login_hosts={name: c.login_check_hosts for name, c in config.vault_connections.items()},
                          gate=gate)
    incident_scheduler = incidents.scheduler
    # A run that raises (a bug) says so on its object's Ready condition (InternalError).
    for scheduler, kind in ((sync_scheduler, SECRET_SOURCE), (rotation_scheduler, ROTATION_POLICY),
                            (incident_scheduler, LEAK_INCIDENT)):
        scheduler.report_crashes(crash_reporter(kube, kind.kind, kind.plural))
    reloader = Reloader(kube, key, window=config.reload_batch_seconds,
                        limits=RateLimits(config.restarts_per_namespace, config.restarts_cluster,
                                          config.restart_limit_window_seconds),
                        poll_seconds=config.reload_poll_seconds, gate=gate)

    def feed_gap(connection: str) -> None:  # the feed stopped vouching: stretched timers back to their own
        for source, delay in sync.backstop.catch_up(sync.sources.values(), connection):
            sync_scheduler.schedule(source, delay)

    feeds = ChangeFeeds.build(config.vault_connections, SourcesPort(sync, sync_scheduler),
                              lambda: sync.sources.values(), gate=gate, on_gap=feed_gap)
    if feeds.feeds:
        sync.backstop.feeds = feeds  # the FeedHealth port: timer refreshes wait while a feed is healthy
    runtime = Runtime(config, kube, backends, sync, sync_scheduler, rotator, rotation_scheduler, incidents,
                      incident_scheduler, reloader, gate, feeds=feeds)
    # ROTOR_RELIST_SECONDS: the backstop reconcile's period (0: only after a re-list or a resume).
    runtime.relist = relister(runtime, float(os.environ.get("ROTOR_RELIST_SECONDS") or RELIST_SECONDS))

    def secret_changed(event_type: str | None, body: Mapping[str, Any], whole: bool) -> None:
        drifted = sync.observe_secret(event_type, body, whole)
        if drifted is not None:
            sync_scheduler.schedule(drifted, 0.0)

    runtime.secret_feed = SecretFeed(kube, f"{keys.MANAGED_BY}={keys.MANAGED_BY_VALUE}", config.namespaces,
                                     wants_data=sync.wants_data,
                                     observers=(secret_changed, reloader.view.observe_secret),
                                     relisted=lambda: runtime.relist.relisted(), gate=gate)
    if on_source is not None:
        runtime.source_feed = SourceFeed(kube, config.namespaces, handle=lambda t, body: on_source(runtime, t, body),
                                         relisted=lambda: runtime.relist.relisted())
    return runtime


def relister(rt: Runtime, interval: float) -> Relister:
    """The re-list reconciler over every watch-fed view: each kind's `gone` does what its DELETED watch
    event does in the handlers (rotor.handlers.secretsource, .rotation, .incident, .delivery)."""
    scopes: list[str | None] = [*rt.config.namespaces] or [None]

    def objects(kind: Kind, bodies: bool = False) -> Callable[[], Awaitable[dict[Key, object | None]]]:
        async def listed() -> dict[Key, object | None]:
            if bodies:
                return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for scope in scopes
                        for o in await rt.kube.list_objects(GROUP, VERSION, kind.plural, scope)}
            return {(o["metadata"]["namespace"], o["metadata"]["name"]): None for scope in scopes
                    for o in (await rt.kube.list_metadata(GROUP, VERSION, kind.plural, scope))[0]}
        return listed

    selector = f"{keys.MANAGED_BY}={keys.MANAGED_BY_VALUE}"

    async def managed_secrets() -> dict[Key, object | None]:
        return {(o["metadata"]["namespace"], o["metadata"]["name"]): None for scope in scopes
                for o in (await rt.kube.list_metadata("", "v1", "secrets", scope, label_selector=selector))[0]}

    def managed_held() -> dict[Key, object]:
        # The view also keeps Secrets it read and does not manage (a Merge target before its first
        # write): their watch is not Rotor's, so no list of managed Secrets has them.
        return {k: s for k, s in rt.sync.secrets.items() if s.labels.get(keys.MANAGED_BY) == keys.MANAGED_BY_VALUE}

    def deleted(key: Key, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {"metadata": {"namespace": key[0], "name": key[1], "labels": dict(labels or {})}}

    def source_gone(key: Key, _: object) -> None:
        rt.sync.observe_source("DELETED", deleted(key))
        rt.sync_scheduler.remove(key)
        rt.reloader.view.observe_source("DELETED", deleted(key))
        for incident in rt.incidents.for_source(*key):
            rt.incident_scheduler.schedule(incident, 0.0)

    def secret_gone(key: Key, held: object) -> None:
        body = deleted(key, getattr(held, "labels", None))
        source = rt.sync.observe_secret("DELETED", body)
        if source is not None:
            rt.sync_scheduler.schedule(source, 0.0)  # re-create it (its status still says Synced)
        rt.reloader.view.observe_secret("DELETED", body)

    def policy_gone(key: Key, _: object) -> None:
        rt.rotator.forget((key[0], key[1]))
        rt.rotation_scheduler.remove(key)
        for incident in rt.incidents.for_policy(*key):
            rt.incident_scheduler.schedule(incident, 0.0)

    def policy_listed(key: Key, body: object) -> None:
        # The policy's event handler passes over a listing's events: a rotate-now annotation or a
        # deletion (a lease finalizer holds the object) that came in the gap is seen here.
        if isinstance(body, Mapping) and rt.rotator.observe(body):
            rt.rotation_scheduler.schedule(key, 0.0)

    def incident_gone(key: Key, _: object) -> None:
        rt.incidents.forget((key[0], key[1]))
        rt.incident_scheduler.remove(key)

    async def workloads() -> dict[Key, object | None]:
        return {(kind, o["metadata"]["namespace"], o["metadata"]["name"]): None for kind in RESTARTABLE
                for scope in scopes for o in (await rt.kube.list_metadata(
                    BY_KIND[kind].group, BY_KIND[kind].version, BY_KIND[kind].plural, scope))[0]}

    def workload_gone(key: Key, _: object) -> None:
        rt.reloader.view.observe_workload(key[0], "DELETED", deleted(key[1:]))

    return Relister([
        Relisted(SECRET_SOURCE.kind, lambda: rt.sync.sources, objects(SECRET_SOURCE), source_gone),
        Relisted("managed Secret", managed_held, managed_secrets, secret_gone),
        Relisted(ROTATION_POLICY.kind, lambda: rt.rotator.policies, objects(ROTATION_POLICY, bodies=True),
                 policy_gone, policy_listed),
        Relisted(LEAK_INCIDENT.kind, lambda: rt.incidents.incidents, objects(LEAK_INCIDENT), incident_gone),
        # Every workload of every watched namespace: too much to list every few minutes.
        Relisted("workload", lambda: rt.reloader.view.workloads, workloads, workload_gone, periodic=False),
    ], interval=interval, gate=rt.gate)
