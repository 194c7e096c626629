"""RotationPolicies on AWS Secrets Manager secrets, through the same state machine as Vault's: the new
value is staged (AWSPENDING) under a token from the rotation's id, delivered to the target Secret while
AWSCURRENT still names the old one, made AWSCURRENT once consumers run it, the old one kept as AWSPREVIOUS
through the overlap window and then retired (its labels removed).

moto (IAM enforced) stands in for AWS; the rotator acts as its own role, the SecretSource as the app's
(read-only) role. A client reading AWSCURRENT (as workloads reading AWS directly do) and the target
Secret stands in for readers.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import kubernetes
import pytest

from ..conftest import secret_data, secret_source, wait_for, wait_ready
from ..test_rotation import consumer, deadline_exceeded, rotate_now, status, wait_phase, wait_rotations
from .conftest import AwsTenant
from .rotation import aws_policy, current, labelled, labels, rotator, step_time
from .test_aws_sync import aws_spec, unique
from .testbed import MotoTestbed

pytestmark = pytest.mark.usefixtures("aws_rotor")


class Reader(threading.Thread):
    """Reads the password under AWSCURRENT and in the target Secret every 0.5 s; keeps (start, both)."""

    def __init__(self, moto: MotoTestbed, core: Any, namespace: str, secret_id: str, target: str) -> None:
        super().__init__(daemon=True)
        self.sm, self.core = moto.admin("secretsmanager"), core
        self.namespace, self.secret_id, self.target = namespace, secret_id, target
        self.stop_flag = threading.Event()
        self.reads: list[tuple[datetime.datetime, str, str]] = []

    def run(self) -> None:
        while not self.stop_flag.is_set():
            started = datetime.datetime.now(datetime.UTC)
            aws = json.loads(self.sm.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")[
                "SecretString"])["password"]
            delivered = (secret_data(self.core, self.namespace, self.target) or {}).get("password", b"").decode()
            self.reads.append((started, aws, delivered))
            time.sleep(0.5)

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.join(10)


def setup(moto: MotoTestbed, core: Any, custom: Any, tenant: AwsTenant, value: dict[str, Any]) -> tuple[str, str]:
    """A secret holding VALUE, its SecretSource `db` (target db-creds, the app's role), the rotator role."""
    secret_id = unique(f"{tenant.namespace}/db")
    moto.admin("secretsmanager").create_secret(Name=secret_id, SecretString=json.dumps(value))
    secret_source(custom, tenant.namespace, "db", {**aws_spec(tenant, secretsManager={"secretId": secret_id}),
                                                   "target": {"name": "db-creds"}, "refresh": {"interval": "1h"}})
    wait_ready(custom, tenant.namespace, "db")
    return secret_id, rotator(core, moto, tenant)


def test_overlap_reader_of_awscurrent_sees_no_stale_value_after_the_window(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any, api_client: Any) -> None:
    ns = tenant.namespace
    secret_id, role = setup(moto_server, core, custom, tenant, {"username": "app", "password": "first-pw-7Hq"})
    old = current(moto_server, secret_id)["VersionId"]
    apps = kubernetes.client.AppsV1Api(api_client)
    consumer(apps, ns)  # holds the rotation in Verifying until the test plays its rollout
    with Reader(moto_server, core, ns, secret_id, "db-creds") as reader:
        wait_for(lambda: len(reader.reads) >= 3, what="reads before the rotation")
        aws_policy(custom, ns, "db", role, {"strategy": "overlap", "overlap": {"window": "4s"},
                                            "generator": {"length": 24}})
        rotate_now(custom, ns, "db")
        wait_phase(custom, ns, "db", "Verifying")
        # Readers move first: the Secret holds the new value while AWSCURRENT still names the old version.
        wait_for(lambda: any(r[1] == "first-pw-7Hq" and r[2] not in ("", "first-pw-7Hq") for r in reader.reads),
                 what="a read of the new value in the Secret with the old one under AWSCURRENT")
        assert "AWSCURRENT" in labels(moto_server, secret_id)[old]
        wait_for(lambda: rolled_out(apps, custom, ns), what="the consumer rolled out and the policy moved on")
        wait_phase(custom, ns, "db", "Overlapping")
        # Through the window the old value is still readable as AWSPREVIOUS.
        wait_for(lambda: "AWSPREVIOUS" in labels(moto_server, secret_id)[old], what="AWSCURRENT moved")
        assert json.loads(current(moto_server, secret_id, "AWSPREVIOUS")["SecretString"])["password"] == "first-pw-7Hq"
        s = wait_rotations(custom, ns, "db", 1)
        seen = len(reader.reads)
        wait_for(lambda: len(reader.reads) >= seen + 4, what="reads after the rotation")
    window_end = step_time(s, "Revoking")
    new = s["rotation"]["new"]["version"]
    after = [r for r in reader.reads if r[0] >= window_end]
    stale = [r for r in after if "first-pw-7Hq" in (r[1], r[2])]
    print(f"\naws overlap rotation: {len(reader.reads)} reads of AWSCURRENT and the Secret, {len(after)} after "
          f"the window, {len(stale)} stale")
    assert after and not stale
    assert any(r[1] == "first-pw-7Hq" for r in reader.reads)  # the reader did see the old value before
    # Readers move first: no read (AWSCURRENT, then the Secret) found AWSCURRENT ahead of the Secret.
    assert not [r for r in reader.reads if r[1] != "first-pw-7Hq" and r[2] == "first-pw-7Hq"]
    final = labels(moto_server, secret_id)
    assert final[old] == [] and "AWSCURRENT" in final[new] and "AWSPENDING" not in final[new]
    assert len(final) == 2  # one version written, however often a phase was retried
    password = (secret_data(core, ns, "db-creds") or {})["password"].decode()
    assert password != "first-pw-7Hq" and len(password) == 24
    assert (secret_data(core, ns, "db-creds") or {})["username"] == b"app"


def rolled_out(apps: Any, custom: Any, namespace: str) -> bool:
    """Play the Deployment controller: the consumer's current template is rolled out and Ready."""
    generation = apps.read_namespaced_deployment("api", namespace).metadata.generation
    apps.patch_namespaced_deployment_status("api", namespace, {"status": {
        "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
        "availableReplicas": 1, "unavailableReplicas": 0}})
    return status(custom, namespace, "db").get("phase") != "Verifying"


def test_versioned_keeps_n_labelled_versions_and_pinned_readers_keep_theirs(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any) -> None:
    ns = tenant.namespace
    secret_id, role = setup(moto_server, core, custom, tenant, {"password": "v1"})
    first = current(moto_server, secret_id)["VersionId"]
    aws_policy(custom, ns, "db", role, {"strategy": "versioned", "versioned": {"keep": 3}, "overlap": {"window": "1s"},
                                        "generator": {"length": 20}})
    rotate_now(custom, ns, "db")
    wait_rotations(custom, ns, "db", 1)
    pinned = current(moto_server, secret_id)["VersionId"]
    secret_source(custom, ns, "pinned", {**aws_spec(tenant, secretsManager={"secretId": secret_id,
                                                                             "versionId": pinned}),
                                         "target": {"name": "pinned"}})
    wait_ready(custom, ns, "pinned")
    pinned_value = secret_data(core, ns, "pinned")
    published = [first, pinned]
    for n in range(2, 5):
        rotate_now(custom, ns, "db")
        published.append(wait_rotations(custom, ns, "db", n)["rotation"]["new"]["version"])
        assert labelled(moto_server, secret_id) == published[-3:], n
        if pinned in published[-3:]:
            assert secret_data(core, ns, "pinned") == pinned_value
    assert list(labels(moto_server, secret_id)) == published  # nothing written twice
    assert pinned_value is not None and pinned_value != secret_data(core, ns, "db-creds")


def test_dry_run_touches_nothing(moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any) -> None:
    ns = tenant.namespace
    secret_id, role = setup(moto_server, core, custom, tenant, {"password": "kept-as-is"})
    before = (labels(moto_server, secret_id), secret_data(core, ns, "db-creds"))
    aws_policy(custom, ns, "db", role, {"strategy": "overlap", "dryRun": True, "overlap": {"window": "1s"}})
    rotate_now(custom, ns, "db")
    s = wait_phase(custom, ns, "db", "Complete")
    assert all("dry run" in step["message"] for step in s["rotation"]["steps"])
    assert (labels(moto_server, secret_id), secret_data(core, ns, "db-creds")) == before
    assert s.get("rotations", 0) == 0


def test_a_rotator_without_write_access_is_denied_and_nothing_changes(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any) -> None:
    ns = tenant.namespace
    secret_id, _ = setup(moto_server, core, custom, tenant, {"password": "unchanged"})
    before = labels(moto_server, secret_id)
    reader_role = tenant.role_arn.rsplit("/", 1)[1]  # the app's role: reads, may not write
    custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", ns, "rotationpolicies", {
        "apiVersion": "rotor.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "db"},
        "spec": {"secretSourceRef": {"name": "db"}, "schedule": {"interval": "720h"}, "strategy": "overlap",
                 "identity": {"serviceAccountName": "app", "role": reader_role}}})
    rotate_now(custom, ns, "db")

    def denied() -> dict[str, Any] | None:
        ready = next((c for c in status(custom, ns, "db").get("conditions") or () if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] == "PermissionDenied" else None

    condition = wait_for(denied, 60, what="PermissionDenied")
    assert "AWS denied" in condition["message"] and tenant.role_arn in condition["message"]
    assert status(custom, ns, "db")["phase"] == "Publishing"  # stays in the phase, retries; never skips ahead
    assert labels(moto_server, secret_id) == before


def test_failed_verification_keeps_awscurrent_and_retires_the_new_version(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any, api_client: Any) -> None:
    """A consumer whose rollout the Deployment controller gave up on: the rotation rolls back; AWSCURRENT
    never left the old version, the Secret gets it back and the unverified one has no label."""
    ns = tenant.namespace
    secret_id, role = setup(moto_server, core, custom, tenant, {"password": "old-value-5Tz"})
    old = current(moto_server, secret_id)["VersionId"]
    apps = kubernetes.client.AppsV1Api(api_client)
    consumer(apps, ns)
    aws_policy(custom, ns, "db", role, {"strategy": "overlap", "overlap": {"window": "1s"},
                                        "verify": {"timeout": "10m"}, "deadline": "1h"})
    rotate_now(custom, ns, "db")
    wait_phase(custom, ns, "db", "Verifying")
    # While it propagates and verifies, the Secret holds the new value and AWSCURRENT the old one.
    wait_for(lambda: (secret_data(core, ns, "db-creds") or {}).get("password") not in (None, b"old-value-5Tz"),
             what="the new value in the Secret")
    assert current(moto_server, secret_id)["VersionId"] == old
    assert "AWSPENDING" in labels(moto_server, secret_id)[status(custom, ns, "db")["rotation"]["new"]["version"]]
    deadline_exceeded(apps, ns, "api")
    s = wait_phase(custom, ns, "db", "RolledBack", timeout=30)
    new = s["rotation"]["new"]["version"]
    assert current(moto_server, secret_id)["VersionId"] == old
    final = labels(moto_server, secret_id)
    assert final[new] == [] and "AWSCURRENT" in final[old], final
    wait_for(lambda: secret_data(core, ns, "db-creds") == {"password": b"old-value-5Tz"},
             what="readers back on the old value")
