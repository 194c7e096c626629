"""Pod injection from annotations: what the webhook adds, and what makes it refuse."""

from __future__ import annotations

import json
from typing import Any

from rotor.api.keys import INJECTED
from rotor.planning import podspec
from rotor.planning.injection import (
    InjectionRequest,
    SourceView,
    describe,
    env_name,
    parse_request,
    plan_injection,
    volume_name,
)

READY = {"db": SourceView("db", exists=True, ready=True, target="db-credentials", keys=("password", "tls.crt")),
         "api-key": SourceView("api-key", exists=True, ready=True, target="api-key")}


def pod(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "p", "namespace": "team-a"},
                            "spec": {"containers": [{"name": "app", "image": "app:1"},
                                                    {"name": "sidecar", "image": "proxy:1"}]}}
    body["spec"].update(spec)
    return body


def request(**annotations: str) -> InjectionRequest:
    parsed, problems = parse_request({"rotor.dev/secrets": "db,api-key", **annotations})
    assert parsed is not None, problems
    return parsed


def test_default_is_a_read_only_volume_per_source_in_every_container() -> None:
    plan = plan_injection(pod(), request(), READY, "team-a")
    assert plan.problems == () and plan.injected == ("db", "api-key")
    spec = plan.patch["spec"]
    assert spec["volumes"] == [{"name": "rotor-db", "secret": {"secretName": "db-credentials"}},
                               {"name": "rotor-api-key", "secret": {"secretName": "api-key"}}]
    for container in spec["containers"]:
        assert container["volumeMounts"] == [
            {"name": "rotor-db", "mountPath": "/var/run/secrets/rotor/db", "readOnly": True},
            {"name": "rotor-api-key", "mountPath": "/var/run/secrets/rotor/api-key", "readOnly": True}]
    assert plan.patch["metadata"]["annotations"][INJECTED] == "volume:db,api-key"


def test_existing_volumes_and_mounts_are_kept() -> None:
    body = pod(volumes=[{"name": "cache", "emptyDir": {}}])
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    plan = plan_injection(body, request(), READY, "team-a")
    assert plan.patch["spec"]["volumes"][0] == {"name": "cache", "emptyDir": {}}
    assert plan.patch["spec"]["containers"][0]["volumeMounts"][0] == {"name": "cache", "mountPath": "/cache"}


def test_envfrom_with_prefix_only_in_the_named_container() -> None:
    plan = plan_injection(pod(), request(**{"rotor.dev/inject-as": "env", "rotor.dev/containers": "app",
                                            "rotor.dev/env-prefix": "DB_"}), READY, "team-a")
    app, sidecar = plan.patch["spec"]["containers"]
    assert app["envFrom"] == [{"secretRef": {"name": "db-credentials"}, "prefix": "DB_"},
                              {"secretRef": {"name": "api-key"}, "prefix": "DB_"}]
    assert "envFrom" not in sidecar and "volumes" not in plan.patch["spec"]


def test_per_key_env_references_each_key_and_never_a_value() -> None:
    parsed, _ = parse_request({"rotor.dev/secrets": "db", "rotor.dev/inject-as": "env-keys",
                               "rotor.dev/env-prefix": "APP_"})
    assert parsed is not None
    body = pod()
    body["spec"]["containers"][0]["env"] = [{"name": "APP_PASSWORD", "value": "set-by-the-team"}]
    plan = plan_injection(body, parsed, READY, "team-a")
    env = plan.patch["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "APP_PASSWORD", "value": "set-by-the-team"}  # the pod's own definition wins
    assert env[1] == {"name": "APP_TLS_CRT", "valueFrom": {"secretKeyRef": {"name": "db-credentials",
                                                                            "key": "tls.crt"}}}
    assert len(env) == 2


def test_env_keys_needs_known_keys() -> None:
    parsed, _ = parse_request({"rotor.dev/secrets": "api-key", "rotor.dev/inject-as": "env-keys"})
    assert parsed is not None
    plan = plan_injection(pod(), parsed, READY, "team-a")
    assert "keys of SecretSource \"api-key\" are not known" in plan.problems[0]


def test_unknown_source_is_a_problem_naming_it_and_what_to_do() -> None:
    parsed, _ = parse_request({"rotor.dev/secrets": "db,missing"})
    assert parsed is not None
    plan = plan_injection(pod(), parsed, READY, "team-a")
    assert plan.injected == ("db",)
    assert len(plan.problems) == 1
    message = describe(plan.problems)
    assert 'SecretSource "missing" does not exist in namespace "team-a"' in message
    assert "create it" in message and "rotor.dev/secrets" in message


def test_not_ready_source_is_referenced_but_reported_with_its_reason() -> None:
    views = {"db": SourceView("db", exists=True, ready=False, target="db", reason="PermissionDenied",
                              message="role cannot read team-a/db")}
    parsed, _ = parse_request({"rotor.dev/secrets": "db"})
    assert parsed is not None
    plan = plan_injection(pod(), parsed, views, "team-a")
    assert plan.injected == ("db",)
    assert "is not Ready (PermissionDenied: role cannot read team-a/db)" in plan.problems[0]


def test_malformed_annotations_are_named() -> None:
    _, problems = parse_request({})
    assert "rotor.dev/secrets is missing" in problems[0]
    _, problems = parse_request({"rotor.dev/secrets": "Bad_Name,db,db", "rotor.dev/inject-as": "file",
                                 "rotor.dev/env-prefix": "1X"})
    text = " | ".join(problems)
    assert "'Bad_Name' is not a valid SecretSource name" in text
    assert "names a SecretSource twice" in text
    assert "'file' is not one of volume, env, env-keys" in text
    assert "rotor.dev/env-prefix: '1X'" in text


def test_unknown_container_is_a_problem() -> None:
    plan = plan_injection(pod(), request(**{"rotor.dev/containers": "app,worker"}), READY, "team-a")
    assert "no container named 'worker'" in plan.problems[0]


def test_mount_path_clash_is_a_problem() -> None:
    body = pod()
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "mine", "mountPath": "/var/run/secrets/rotor/db"}]
    plan = plan_injection(body, request(), READY, "team-a")
    assert "already mounts 'mine' at /var/run/secrets/rotor/db" in plan.problems[0]


def test_init_containers_only_when_named() -> None:
    body = pod(initContainers=[{"name": "migrate", "image": "app:1"}])
    plan = plan_injection(body, request(), READY, "team-a")
    assert "volumeMounts" not in plan.patch["spec"]["initContainers"][0]
    plan = plan_injection(body, request(**{"rotor.dev/containers": "migrate"}), READY, "team-a")
    assert plan.patch["spec"]["initContainers"][0]["volumeMounts"][0]["name"] == "rotor-db"


def test_injecting_twice_changes_nothing() -> None:
    first = plan_injection(pod(), request(), READY, "team-a")
    again = pod(**first.patch["spec"])
    second = plan_injection(again, request(), READY, "team-a")
    assert json.dumps(second.patch["spec"], sort_keys=True) == json.dumps(first.patch["spec"], sort_keys=True)


def test_names_are_valid_kubernetes_names() -> None:
    long = "a" * 70 + ".b"
    name = volume_name(long)
    assert len(name) <= 63 and "." not in name and volume_name(long) == name
    assert env_name("", "tls.crt") == "TLS_CRT" and env_name("", "1st") == "_1ST"


def test_the_patch_holds_no_secret_value() -> None:
    # The planner never sees values; the patch can only name Secrets and keys.
    plan = plan_injection(pod(), request(**{"rotor.dev/inject-as": "env"}), READY, "team-a")
    assert "value" not in json.dumps(plan.patch).replace("valueFrom", "")


def test_the_pod_spec_walker_sees_every_injected_target_as_a_runtime_read() -> None:
    # Reloads, the inventory and incidents find the readers of a Secret with podspec: whatever the
    # webhook writes, they must see.
    for inject_as in ("volume", "env", "env-keys"):
        plan = plan_injection(pod(), request(**{"rotor.dev/inject-as": inject_as}), READY, "team-a")
        patched = {**pod()["spec"], **plan.patch["spec"]}
        wanted = ("db-credentials",) if inject_as == "env-keys" else ("api-key", "db-credentials")
        assert podspec.referenced_secrets(patched, podspec.RUNTIME_USES) == wanted, inject_as
