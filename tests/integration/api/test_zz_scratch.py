import time, json
import pytest
from tests.unit.api.test_fuzz_models import policy_base, incident_base
pytestmark = pytest.mark.usefixtures("operator")

def test_scratch(custom, namespace):
    specs = {"cron": policy_base(("schedule","cron")), "dyn": policy_base(("dynamic",)), "plain": policy_base(("x",)),
             "sr": {**policy_base(("x",)), "overlap": {"staticRoles": ["a", "b"]}}}
    for name, spec in specs.items():
        custom.create_namespaced_custom_object("rotor.dev","v1alpha1",namespace,"rotationpolicies",
            {"apiVersion":"rotor.dev/v1alpha1","kind":"RotationPolicy","metadata":{"name":name},"spec":spec})
    time.sleep(12)
    for name in specs:
        body = custom.get_namespaced_custom_object("rotor.dev","v1alpha1",namespace,"rotationpolicies",name)
        print("\nXX", name, json.dumps(body.get("status"))[:600])
