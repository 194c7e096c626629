"""Delivery into workloads: the pod-injection webhook, and the watches that feed restarts on change.

Thin: decode, ask rotor.planning.injection / hand watch events to the Reloader's view
(rotor.engines.delivery.view). No create/update/resume handler ever touches core Secrets (Kopf
would copy their data into an annotation): Secrets are only watched with event handlers. A listing's
events (type None) on these watches also tell the re-list reconciler (rotor.engines.relist).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.keys import INJECT_LABEL, SOURCE_LABEL
from rotor.api.kinds import SECRET_SOURCE
from rotor.config import Settings
from rotor.engines.secretsource.view import SyncView
from rotor.handlers.guard import guarded
from rotor.handlers.memo import runtime_of
from rotor.kube import KubeError
from rotor.observability.metrics import WEBHOOK_ADMISSIONS
from rotor.planning.injection import SourceView as InjectionView
from rotor.planning.injection import describe, parse_request, plan_injection
from rotor.planning.podspec import BY_KIND, RESTARTABLE
from rotor.planning.sync import target_name

if TYPE_CHECKING:
    from rotor.wiring import Runtime

log = logging.getLogger("rotor.webhook")

WEBHOOK_CONFIGURATION = GROUP  # the MutatingWebhookConfiguration Kopf creates and keeps current


async def _no_webhook_server(fn: Any) -> AsyncIterator[Any]:
    # Kopf refuses to start with admission handlers and no server; with the webhook disabled,
    # this one never listens and never yields a client config (so nothing is registered).
    await asyncio.Event().wait()
    yield {}  # pragma: no cover - unreachable


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Called from the startup handler: the webhook server (when enabled) and the restart executor."""
    from rotor.servingcert import ServingCertificate

    config: Settings = memo.config
    if config.webhook_enabled and config.webhook_cert_dir is not None:
        # Installed by the chart: its Secret (or cert-manager) holds the certificate, Kopf re-reads it
        # when it changes, and the chart owns the MutatingWebhookConfiguration (served at /inject-secrets).
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_addr, port=config.webhook_port or None, host=config.webhook_host,
            certfile=str(config.webhook_cert_dir / "tls.crt"), pkeyfile=str(config.webhook_cert_dir / "tls.key"))
    elif config.webhook_enabled:
        host = config.webhook_host or config.webhook_addr
        cert = ServingCertificate([host, config.webhook_addr])
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_addr, port=config.webhook_port or None, host=host,
            certfile=str(cert.pem_file), pkeyfile=str(cert.pem_file), cafile=str(cert.ca_file))
        settings.admission.managed = WEBHOOK_CONFIGURATION
        memo.webhook_cert = cert
        memo.webhook_cert_task = asyncio.get_running_loop().create_task(cert.keep_renewed())
    else:
        settings.admission.server = _no_webhook_server


def shutdown(memo: kopf.Memo) -> None:
    task = getattr(memo, "webhook_cert_task", None)
    if task is not None:
        task.cancel()
    cert = getattr(memo, "webhook_cert", None)
    if cert is not None:
        shutil.rmtree(cert.dir, ignore_errors=True)


# Persistent: the configuration stays when Rotor stops, so a labelled pod is refused rather than
# started without its secrets; the objectSelector keeps every other pod away from Rotor.
@kopf.on.mutate("", "v1", "pods", id="inject-secrets", operations=["CREATE"], labels={INJECT_LABEL: "true"},
                persistent=True, side_effects=False)
async def inject(body: kopf.Body, patch: kopf.Patch, warnings: list[str], memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo.config
    namespace = str(body.get("metadata", {}).get("namespace") or "")
    annotations = dict(body.get("metadata", {}).get("annotations") or {})
    request, problems = parse_request(annotations)
    if request is None:
        _refuse_or_warn(config, problems, warnings)
        return
    views, problem = await source_views(runtime_of(memo), namespace, request.sources)
    if problem is not None:
        _refuse_or_warn(config, [problem], warnings)
        return
    plan = plan_injection(body, request, views, namespace)
    if plan.problems:
        _refuse_or_warn(config, list(plan.problems), warnings)
    else:
        WEBHOOK_ADMISSIONS.labels("injected").inc()
    for key, value in plan.patch.items():
        patch[key] = value


async def source_views(runtime: Runtime, namespace: str,
                       names: Sequence[str]) -> tuple[dict[str, InjectionView], str | None]:
    """What the webhook knows of each named SecretSource: the view's answer when this replica is the
    active one and the answer is a yes (exists, Ready, keys known); otherwise the API server's.

    Every replica serves admission (the chart's Service selects them all; a readiness that followed
    peering would leave the new pod of a rolling update never Ready). A standby's view is empty or
    stale (its watches are paused), and an active one's may lag a source created a moment ago, so a
    "no" is never answered from memory. Second: a problem when the API server cannot be asked."""
    active = runtime.gate is None or runtime.gate.is_set()
    views = {name: runtime.sync.source_view(namespace, name) for name in names} if active else {}
    unsure = [name for name in names if name not in views or not (
        views[name].exists and views[name].ready and views[name].keys is not None)]
    if not unsure:
        return views, None
    try:
        views.update(await _read_sources(runtime, namespace, unsure))
    except KubeError as err:
        if active:
            return views, None  # the view's own answer, as before
        return views, (f"Rotor could not read the SecretSources of namespace \"{namespace}\" from the API server "
                       f"(HTTP {err.status} {err.reason}): create the pod again")
    log.debug("admission in %s: %s read from the API server (%s replica)", namespace, ", ".join(unsure),
              "active" if active else "standby")
    return views, None


async def _read_sources(runtime: Runtime, namespace: str, names: Sequence[str]) -> dict[str, InjectionView]:
    """NAMES as the API server has them now, with their target Secrets' keys (one list: Rotor's RBAC
    lists SecretSources, it does not get them). Folded by a scratch view, as the watch would."""
    scratch = SyncView(runtime.sync.hmac_key)
    for body in await runtime.kube.list_objects(GROUP, VERSION, SECRET_SOURCE.plural, namespace):
        if (body.get("metadata") or {}).get("name") in names:
            scratch.observe_source(None, body)
    for name in names:
        state = scratch.source(namespace, name)
        if state is not None and state.spec is not None:
            target = target_name(state.spec, name)
            secret = await runtime.kube.read_secret(namespace, target)
            if secret is not None and secret.labels.get(SOURCE_LABEL) == name:  # its keys, not another's
                scratch.remember(namespace, target, secret)
    return {name: scratch.source_view(namespace, name) for name in names}


def _refuse_or_warn(config: Settings, problems: list[str], warnings: list[str]) -> None:
    if config.webhook_failure_mode == "reject":
        WEBHOOK_ADMISSIONS.labels("rejected").inc()
        raise kopf.AdmissionError(describe(problems), code=403)
    WEBHOOK_ADMISSIONS.labels("warned").inc()
    warnings.extend(problems)


# -- restarts on change: every event goes to the Reloader's view, which compares digests ------------
# (managed Secrets' events come from rotor.engines.secretfeed, wired in rotor.wiring; SecretSources' from
# rotor.handlers.secretsource, one handler for every view)

def _workload_event(kind: str) -> Callable[..., Awaitable[None]]:
    async def workload_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        runtime_of(memo).reloader.view.observe_workload(kind, event.get("type"), event["object"])

    return workload_event


def _watch_workloads() -> None:
    """One watch per kind Rotor restarts (the podspec table), as reload-deployment, reload-cronjob..."""
    for kind in RESTARTABLE:
        table = BY_KIND[kind]
        kopf.on.event(table.group, table.version, table.plural, id=f"reload-{kind.lower()}")(
            guarded(None)(_workload_event(kind)))


_watch_workloads()
