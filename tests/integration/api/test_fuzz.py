"""Every bad field gets a status: property-based fuzz against the real API server and a running Rotor.

For each kind, Hypothesis sets one field (any depth) of a valid spec to a valid-ish or hostile value
(tests/unit/api/fuzzing.py). Each value must be rejected at admission naming the field, or the object
must get a Ready condition within 10 s: True, or False with a named reason (InvalidSpec naming the
field). No handler or worker may crash: no traceback, no "failed unexpectedly", no InternalError.
The numbers (inputs tried, rejected at admission, given a status, crashes) print at the end of the
module. FUZZ_EXAMPLES (environment) sets the examples per kind for a longer run.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hvac
import kubernetes
import pytest
from hypothesis import HealthCheck, given, settings

from rotor.api import keys
from rotor.api.kinds import LEAK_INCIDENT, ROTATION_POLICY, SECRET_SOURCE, Kind
from tests.unit.api.fuzzing import Case, Path, cases
from tests.unit.api.test_fuzz_models import (
    PARAMETER_STORE,
    SOURCE_BASES,
    incident_base,
    policy_base,
)

from ..conftest import OperatorLogs

pytestmark = pytest.mark.usefixtures("operator")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
STATUS_WITHIN = 10.0  # seconds from creation to a Ready condition
CRASH_SIGNS = ("Traceback", "failed unexpectedly", keys.INTERNAL_ERROR)
_names = itertools.count()


@dataclass
class Tally:
    tried: int = 0
    rejected: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "True/Synced", "False/InvalidSpec", ...
    crashes: list[str] = field(default_factory=list)  # tracebacks, "failed unexpectedly", InternalError
    late: list[str] = field(default_factory=list)  # accepted, and no Ready condition within STATUS_WITHIN

    def line(self, what: str) -> str:
        given_status = sum(self.statuses.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (f"fuzz {what}: {self.tried} inputs tried, {self.rejected} rejected at admission, {given_status} "
                f"given a status ({reasons or '-'}), {len(self.late)} without a status in {STATUS_WITHIN:.0f}s, "
                f"{len(self.crashes)} crashes")


@pytest.fixture(scope="module")
def tallies(request: pytest.FixtureRequest) -> Iterator[dict[str, Tally]]:
    found: dict[str, Tally] = {}
    yield found
    total = Tally()
    for tally in found.values():
        total.tried += tally.tried
        total.rejected += tally.rejected
        total.statuses.update(tally.statuses)
        total.crashes += tally.crashes
        total.late += tally.late
    lines = [tally.line(kind) for kind, tally in found.items()] + [total.line("total")]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # printed whatever the capture mode
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            for line in lines:
                reporter.write_line(line)


@pytest.fixture
def tenant(core: Any, vault: hvac.Client, namespace: str, app_identity: str) -> dict[str, str]:
    """A namespace where the bases work: a Vault secret its ServiceAccount may read, a Secret it may copy."""
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-fuzz"}, mount_point="secret")
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "src", "annotations": {keys.ALLOWED_NAMESPACES: namespace}},
        "data": {"password": base64.b64encode(b"pw-fuzz").decode()}})
    return {"namespace": namespace, "role": app_identity}


def _with_source(custom: Any, tenant: dict[str, str], base_for: Callable[[Path], dict[str, Any]],
                 ) -> Callable[[Path], dict[str, Any]]:
    """BASE_FOR, about a SecretSource that exists and syncs (so incidents run their steps on a real secret)."""
    _create(custom, SECRET_SOURCE, tenant["namespace"], "db", _source_base(tenant)(("vault",)))

    def base(path: Path) -> dict[str, Any]:
        return {**base_for(path), "secretSourceRef": {"name": "db"}}

    return base


def _source_base(tenant: dict[str, str]) -> Callable[[Path], dict[str, Any]]:
    namespace, role = tenant["namespace"], tenant["role"]
    vault = {**SOURCE_BASES["vault"], "vault": {"path": f"{namespace}/db", "role": role}}
    vault["target"] = {k: v for k, v in vault["target"].items() if k != "name"}  # its own Secret each
    kube = {**SOURCE_BASES["kubernetes"], "kubernetes": {"namespace": namespace, "name": "src"}}

    def base(path: Path) -> dict[str, Any]:
        if path[:2] == ("aws", "parameterStore"):
            return PARAMETER_STORE
        return {"kubernetes": kube, "aws": SOURCE_BASES["aws"]}.get(str(path[0]), vault)

    return base


def _create(custom: Any, kind: Kind, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": name}, "spec": spec}
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, kind.plural, body,
                                           field_validation="Strict")


def _ready(custom: Any, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
    body = custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", namespace, kind.plural, name)
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == keys.READY), None)


def _names_field(message: str, case: Case) -> bool:
    return case.leaf in message or any(str(p) in message for p in case.path if isinstance(p, str))


# The operator runs in a thread of this process and uses the random module meanwhile; Hypothesis would
# take that for a strategy using it.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("kind", [SECRET_SOURCE, ROTATION_POLICY, LEAK_INCIDENT], ids=lambda k: k.kind)
def test_every_bad_field_is_refused_or_gets_a_status(
        kind: Kind, custom: Any, tenant: dict[str, str], operator_logs: OperatorLogs,
        tallies: dict[str, Tally], record_property: Callable[[str, Any], None]) -> None:
    namespace = tenant["namespace"]
    base_for = {SECRET_SOURCE.kind: _source_base(tenant), ROTATION_POLICY.kind: policy_base,
                LEAK_INCIDENT.kind: _with_source(custom, tenant, incident_base)}[kind.kind]
    tally = tallies.setdefault(kind.kind, Tally())
    first_line = len(operator_logs.lines)
    problems: list[str] = []

    # What the bases themselves come to (an aws base has no AWS connection here: InvalidSpec for that).
    bases = {json.dumps(base_for(p), sort_keys=True): base_for(p) for p in
             (("vault",), ("kubernetes",), ("aws",), ("aws", "parameterStore"), ("schedule", "cron"), ("dynamic",),
              ("transit",), ("x",))}
    created: list[tuple[str, Case | None, float]] = []
    for spec in bases.values():
        name = f"base-{next(_names)}"
        _create(custom, kind, namespace, name, spec)
        created.append((name, None, time.monotonic()))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(case=cases(kind, base_for))
    def submit(case: Case) -> None:
        name = f"fz-{next(_names)}"
        tally.tried += 1
        try:
            _create(custom, kind, namespace, name, case.spec)
        except kubernetes.client.ApiException as exc:
            assert exc.status in (400, 422), f"{case.field}={case.value!r}: HTTP {exc.status}"
            message = str(json.loads(exc.body or "{}").get("message") or exc.body)
            tally.rejected += 1
            assert _names_field(message, case), f"{case.field}={case.value!r} refused without naming it: {message}"
            return
        created.append((name, case, time.monotonic()))

    submit()

    base_messages: set[str] = set()  # a base's own InvalidSpec (no AWS connection) names no fuzzed field
    for phase in ([c for c in created if c[1] is None], [c for c in created if c[1] is not None]):
        pending = phase
        while pending:
            still = []
            for name, case, since in pending:
                condition = _ready(custom, kind, namespace, name)
                if condition is None:
                    if time.monotonic() - since > STATUS_WITHIN:
                        problems.append(f"{name} ({case.field if case else 'base'}): no Ready condition within "
                                        f"{STATUS_WITHIN:.0f}s")
                    else:
                        still.append((name, case, since))
                    continue
                reason, message = str(condition.get("reason")), str(condition.get("message"))
                if case is None:
                    base_messages.add(message)
                    continue
                tally.statuses[f"{condition['status']}/{reason}"] += 1
                if reason == keys.INTERNAL_ERROR:
                    problems.append(f"{name} ({case.field}={case.value!r}): {message}")
                elif reason == keys.INVALID_SPEC and message not in base_messages and not _names_field(message,
                                                                                                        case):
                    problems.append(f"{name} ({case.field}={case.value!r}): InvalidSpec without naming it: "
                                    f"{message}")
            pending = still
            if pending:
                time.sleep(0.3)

    crashes = [line for line in operator_logs.lines[first_line:] if any(sign in line for sign in CRASH_SIGNS)]
    tally.crashes += crashes + [p for p in problems if keys.INTERNAL_ERROR in p]
    tally.late += [p for p in problems if "no Ready" in p]
    record_property(f"fuzz-{kind.kind}", tally.line(kind.kind))
    assert not crashes, "\n".join(crashes[:5])
    late = [p.split(" ")[0] for p in problems if "no Ready" in p]
    said = [line for line in operator_logs.lines[first_line:] if any(f"/{name}" in line for name in late)]
    assert not problems, "\n".join([*problems[:10], "what the operator said about them:", *said[-20:]])


# -- the inputs that crashed Rotor before, one by one ------------------------------------------------------

POLICY = {"secretSourceRef": {"name": "missing"}, "strategy": "overlap", "schedule": {"interval": "720h"}}


@pytest.mark.parametrize(("kind", "spec", "field_named", "fix"), [
    (ROTATION_POLICY, {**POLICY, "schedule": {"interval": "1000000000d"}}, "spec.schedule.interval", "should match"),
    (ROTATION_POLICY, {**POLICY, "schedule": {"interval": "100000000d"}}, "spec.schedule.interval", "should match"),
    (ROTATION_POLICY, {**POLICY, "schedule": {"interval": "0s"}}, "spec.schedule.interval", "at least 1s"),
    (ROTATION_POLICY, {**POLICY, "overlap": {"window": "500ms"}}, "spec.overlap.window", "at least 1s"),
    (ROTATION_POLICY, {**POLICY, "overlap": {"staticRoles": ["a", "a"]}}, "spec.overlap.staticRoles",
     "two different roles"),
    (ROTATION_POLICY, {**POLICY, "overlap": {"mount": "../sys"}}, "spec.overlap.mount", "should match"),
    (LEAK_INCIDENT, {"secretSourceRef": {"name": "db"}, "exposure": {"where": "git"}, "version": "abc"},
     "spec.version", "should match"),
    (SECRET_SOURCE, {**SOURCE_BASES["vault"], "refresh": {"interval": "0s"}}, "spec.refresh.interval",
     "at least 1s"),
    (SECRET_SOURCE, {**SOURCE_BASES["vault"], "vault": {"path": "a/../b", "role": "app"}}, "spec.vault.path",
     "should match"),
    (SECRET_SOURCE, {**SOURCE_BASES["vault"], "vault": {"path": "a", "role": "app", "audience": "a b"}},
     "spec.vault.audience", "should match"),
], ids=["interval-overflow-in-validation", "interval-overflow-next-time", "interval-0s", "window-500ms",
        "static-roles-same", "mount-traversal", "incident-version-abc", "refresh-0s", "path-traversal",
        "audience-space"])
def test_inputs_that_crashed_rotor_are_refused_naming_the_field(custom: Any, namespace: str, kind: Kind,
                                                                spec: dict[str, Any], field_named: str,
                                                                fix: str) -> None:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        _create(custom, kind, namespace, "x", spec)
    message = str(json.loads(caught.value.body)["message"])
    assert caught.value.status == 422 and field_named in message and fix in message, message


def test_a_cron_that_never_fires_is_invalid_spec_naming_the_field(custom: Any, namespace: str,
                                                                  operator_logs: OperatorLogs) -> None:
    first_line = len(operator_logs.lines)
    _create(custom, ROTATION_POLICY, namespace, "feb30", {**POLICY, "schedule": {"cron": "0 0 30 2 *"}})
    deadline = time.monotonic() + STATUS_WITHIN
    while (condition := _ready(custom, ROTATION_POLICY, namespace, "feb30")) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert condition is not None, "no Ready condition within 10s"
    assert condition["status"] == "False" and condition["reason"] == keys.INVALID_SPEC
    assert "spec.schedule.cron" in condition["message"] and "never fires" in condition["message"]
    assert not [line for line in operator_logs.lines[first_line:] if any(s in line for s in CRASH_SIGNS)]
