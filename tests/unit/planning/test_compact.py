import json

from rotor.planning.compact import SHORT, compact

STATUS = ('{"conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "%s"}],'
          ' "dataHmac": "sha256:%s", "observedGeneration": 3, "ok": true, "ratio": 0.5, "none": null}')


def test_two_objects_share_their_keys_and_short_strings_and_keep_their_own_long_ones() -> None:
    a = compact(json.loads(STATUS % ("Secret a is up to date", "a" * 64)))
    b = compact(json.loads(STATUS % ("Secret b is up to date", "b" * 64)))
    assert a == json.loads(STATUS % ("Secret a is up to date", "a" * 64))  # equal to what was parsed
    ca, cb = a["conditions"][0], b["conditions"][0]
    assert ca["reason"] is cb["reason"] and ca["type"] is cb["type"]
    assert next(iter(ca)) is next(iter(cb))  # the same key object
    assert len(a["dataHmac"]) > SHORT and a["dataHmac"] != b["dataHmac"]


def test_the_copy_is_its_own() -> None:
    parsed = json.loads(STATUS % ("m", "c" * 64))
    kept = compact(parsed)
    kept["conditions"][0]["status"] = "False"
    kept["extra"] = 1
    assert parsed["conditions"][0]["status"] == "True" and "extra" not in parsed
    assert compact(("x", ["y"])) == ("x", ["y"])
