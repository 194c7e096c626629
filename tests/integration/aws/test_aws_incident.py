"""The LeakIncident runbook on an AWS Secrets Manager secret, through the same steps as for Vault: the
leaked version's value is denylisted, the secret rotated by its RotationPolicy, and the leaked version's
staging labels removed (AWS has no per-version delete: it deletes unlabelled versions itself, later)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from rotor.planning.hashing import value_hmac

from ..conftest import secret_data, secret_source, wait_ready
from ..test_incident import actions, hmac_key, incident, no_value_in
from ..test_incident import wait_phase as incident_phase
from .conftest import AwsTenant
from .rotation import aws_policy, current, labels, rotator
from .test_aws_sync import aws_spec, unique
from .testbed import MotoTestbed

pytestmark = pytest.mark.usefixtures("aws_rotor")
G, V = "rotor.dev", "v1alpha1"


def test_leak_runbook_denylists_rotates_and_unlabels_the_leaked_version(
        moto_server: MotoTestbed, tenant: AwsTenant, core: Any, custom: Any) -> None:
    ns = tenant.namespace
    leaked = f"tok-{uuid.uuid4().hex}"
    secret_id = unique(f"{ns}/api")
    sm = moto_server.admin("secretsmanager")
    exposed = sm.create_secret(Name=secret_id, SecretString=json.dumps(
        {"token": leaked, "endpoint": "https://api.example"}))["VersionId"]
    secret_source(custom, ns, "db", {**aws_spec(tenant, secretsManager={"secretId": secret_id}),
                                     "target": {"name": "db-creds"}, "refresh": {"interval": "1h"}})
    wait_ready(custom, ns, "db")
    # keep: 3 would keep the leaked version labelled: the runbook unlabels it all the same.
    aws_policy(custom, ns, "db", rotator(core, moto_server, tenant), {
        "strategy": "versioned", "versioned": {"keep": 3}, "overlap": {"window": "2s"},
        "generator": {"key": "token", "length": 24}, "verify": {"timeout": "30s"}, "deadline": "2m"})
    incident(custom, ns, "ci-leak", {
        "secretSourceRef": {"name": "db"}, "severity": "critical",
        "exposure": {"where": "ci-logs", "reference": "https://ci.example/build/7"},
        "response": {"order": "afterRotation"}})
    status = incident_phase(custom, ns, "ci-leak", "Prevented")

    # Contained: the leaked token's keyed digest is denylisted, the endpoint is not.
    assert value_hmac(hmac_key(core), leaked.encode()) in status["denylist"]
    assert value_hmac(hmac_key(core), b"https://api.example") not in status["denylist"]
    radius = status["blastRadius"]
    assert radius["versions"] == [exposed] and radius["keys"] == ["token"]
    assert radius["backend"] == f"aws:default/secretsmanager/{secret_id}"
    # Rotated: readers have a new token, AWSCURRENT holds it.
    new = (secret_data(core, ns, "db-creds") or {})["token"].decode()
    assert new != leaked and len(new) == 24
    assert json.loads(current(moto_server, secret_id)["SecretString"])["token"] == new
    # Revoked: the leaked version has no staging label left (not even AWSPREVIOUS), despite keep: 3.
    versions = labels(moto_server, secret_id)
    assert versions[exposed] == [] and len(versions) == 2, versions
    # ... which is not deletion: AWS deletes unlabelled versions later, itself; status says so, claims nothing.
    assert status["revocation"].get("confirmed") is None and "no staging label" in status["revocation"]["check"]
    # No audit trail in AWS here (CloudTrail is not read): said, not invented.
    assert status["auditReads"] == [] and status["auditNote"]
    assert actions(status) == ["Reported", "Contained", "Identified", "RotationRequested", "Rotated", "Revoked",
                               "Audited", "Prevented"]
    no_value_in(json.dumps(status), leaked, new)

    # Someone puts the leaked value back in AWS: the sync refuses it, the Secret keeps the new one.
    # (Staged, then moved: moto's plain put moves AWSCURRENT from the version last *written*, not from the one
    # the label is on, and would leave two versions labelled AWSCURRENT after Rotor's label moves.)
    back = sm.put_secret_value(SecretId=secret_id, VersionStages=["AWSPENDING"], SecretString=json.dumps(
        {"token": leaked, "endpoint": "https://api.example"}))["VersionId"]
    sm.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=back,
                                   RemoveFromVersionId=current(moto_server, secret_id)["VersionId"])
    custom.patch_namespaced_custom_object(G, V, ns, "secretsources", "db", {"spec": {"refresh": {"interval": "2s"}}})
    wait_ready(custom, ns, "db", "False", "Denylisted")
    assert (secret_data(core, ns, "db-creds") or {})["token"].decode() == new
