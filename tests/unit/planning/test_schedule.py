from rotor.planning.conditions import set_condition
from rotor.planning.schedule import backoff_delay, refresh_delay


def test_refresh_spreads_within_jitter_and_never_past_the_interval() -> None:
    assert refresh_delay(3600, 0.1, 0.0) == 3600
    assert refresh_delay(3600, 0.1, 0.5) == 3420
    assert 3240 < refresh_delay(3600, 0.1, 0.99) < 3250
    assert max(refresh_delay(60, 0.5, i / 100) for i in range(100)) == 60  # the interval bounds staleness


def test_backoff_grows_then_caps() -> None:
    delays = [backoff_delay(n, 1.0, base=2, cap=60) for n in range(1, 10)]
    assert delays[:5] == [2, 4, 8, 16, 32]
    assert max(delays) == 60 and delays[-1] == 60
    assert backoff_delay(3, 0.0, base=2, cap=60) == 4  # jitter halves at most


def test_condition_transition_time_moves_only_on_flip() -> None:
    c1 = set_condition([], type="Ready", status="False", reason="NotFound", message="m", now="t1", generation=1)
    c2 = set_condition(c1, type="Ready", status="False", reason="PermissionDenied", message="m", now="t2",
                       generation=1)
    c3 = set_condition(c2, type="Ready", status="True", reason="Synced", message="ok", now="t3", generation=2)
    assert c2[0]["lastTransitionTime"] == "t1" and c2[0]["reason"] == "PermissionDenied"
    assert c3[0]["lastTransitionTime"] == "t3" and c3[0]["observedGeneration"] == 2
