"""Who reported and who resolved a LeakIncident, as the API server authenticated them.

A mutating webhook on LeakIncident CREATE and UPDATE records AdmissionReview userInfo.username in the
rotor.dev/reported-by and rotor.dev/resolved-by annotations, signed with the HMAC key
(rotor.planning.incident_actors); whatever the client put there is overwritten. It fails open
(failurePolicy Ignore): a leak can always be reported, and an incident the webhook did not see shows
"unverified: <field manager>". Served with the pod-injection webhook (settings webhook_*); with the
webhook disabled, every actor is unverified.
"""

from __future__ import annotations

from typing import Any

import kopf

from rotor import GROUP, VERSION
from rotor.api.kinds import LEAK_INCIDENT
from rotor.handlers.memo import runtime_of
from rotor.planning import times
from rotor.planning.incident_actors import admission_annotations


@kopf.on.mutate(GROUP, VERSION, LEAK_INCIDENT.plural, id="record-incident-actors", operations=["CREATE", "UPDATE"],
                ignore_failures=True, side_effects=False)
async def record_actors(body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, memo: kopf.Memo,
                        **kwargs: Any) -> None:
    old, operation = kwargs.get("old"), kwargs.get("operation")
    changes = admission_annotations(
        runtime_of(memo).sync.hmac_key, operation=str(operation or ""), body=dict(body),
        old=dict(old) if old is not None else None, user=str(userinfo.get("username") or ""), now=times.now())
    for key, value in changes.items():
        patch.metadata.annotations[key] = value
