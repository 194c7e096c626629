"""Reload decisions: who consumes what, when a workload rolls, batching and rate limits."""

from __future__ import annotations

from typing import Any

from rotor.api.keys import APPLIED
from rotor.api.keys import SECRETS_HASH as HASH
from rotor.planning.reload import (
    Applied,
    RateLimits,
    Workload,
    admit_restarts,
    adopt_patch,
    batch_delay,
    combined_hash,
    consumed_secrets,
    consumer_counts,
    is_current,
    plan_reload,
    report_consumers,
    restart_patch,
    secret_digest,
    short_digest,
    workload_from_body,
)
from rotor.planning.sync import ObservedSecret

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def deployment(template_annotations: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, **pod_spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "team-a", "annotations": annotations or {},
                         "resourceVersion": "7", "generation": 2},
            "spec": {"replicas": 2, "template": {
                "metadata": {"labels": labels or {}, "annotations": template_annotations or {}},
                "spec": {"containers": [{"name": "app"}], **pod_spec}}},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2}}


def test_workloads_that_did_not_opt_in_are_ignored() -> None:
    assert workload_from_body("Deployment", deployment()) is None
    assert workload_from_body("Deployment", deployment({"rotor.dev/secrets": "db"})) is None  # no label


def test_injected_workload_consumes_its_sources_targets() -> None:
    w = workload_from_body("Deployment", deployment({"rotor.dev/secrets": "db, api"},
                                                    labels={"rotor.dev/inject": "true"}))
    assert w is not None and w.injected_sources == ("db", "api")
    assert consumed_secrets(w, {"db": "db-credentials", "api": "api"}) == ("api", "db-credentials")
    assert consumed_secrets(w, {"db": "db-credentials"}) is None  # a source not known yet: do not guess


def test_reload_true_follows_every_reference() -> None:
    spec = {"containers": [{"name": "app", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1",
                                                                                                "key": "k"}}},
                                                   {"name": "B", "value": "plain"}],
                            "envFrom": [{"secretRef": {"name": "s2"}}, {"configMapRef": {"name": "cm"}}]}],
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "s3"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "s4"}},
                        {"name": "p", "projected": {"sources": [{"secret": {"name": "s5"}},
                                                                {"configMap": {"name": "cm"}}]}}],
            "imagePullSecrets": [{"name": "registry"}]}
    everything = workload_from_body("Deployment", deployment(annotations={"rotor.dev/reload": "true"}, **spec))
    # Image pulls happen before a container runs: a new registry login restarts nothing.
    assert everything is not None and everything.referenced == ("s1", "s2", "s3", "s4", "s5")
    w = workload_from_body("Deployment", deployment(annotations={"rotor.dev/reload": "true"}, **{
        k: v for k, v in spec.items() if k not in ("containers", "imagePullSecrets")}))
    assert w is not None and consumed_secrets(w, {}) == ("s3", "s4", "s5")


def test_only_restartable_kinds_are_followed() -> None:
    opted_in = deployment(annotations={"rotor.dev/reload": "true"})
    assert workload_from_body("Job", opted_in) is None and workload_from_body("Pod", opted_in) is None
    assert workload_from_body("ReplicaSet", opted_in) is None


def test_reload_on_names_secrets_on_workload_or_template() -> None:
    w = workload_from_body("StatefulSet", deployment(annotations={"rotor.dev/reload-on": "a,b"}))
    assert w is not None and consumed_secrets(w, {}) == ("a", "b")
    w = workload_from_body("DaemonSet", deployment({"rotor.dev/reload-on": "c"}))
    assert w is not None and consumed_secrets(w, {}) == ("c",)


def test_cronjob_template_lives_under_the_job_template() -> None:
    body = {"metadata": {"name": "nightly", "namespace": "team-a", "resourceVersion": "3"},
            "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": {
                "rotor.dev/reload-on": "db", HASH: "sha256:old"}}, "spec": {}}}}}}
    w = workload_from_body("CronJob", body)
    assert w is not None and w.template_hash == "sha256:old"
    patch = restart_patch(w, Applied({"db": "1"}, "sha256:new"))
    assert patch["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"][HASH] == "sha256:new"


def view(**over: Any) -> Workload:
    base: dict[str, Any] = {"kind": "Deployment", "namespace": "team-a", "name": "web", "reload_on": ("db",),
                            "resource_version": "7"}
    base.update(over)
    return Workload(**base)


def test_first_sight_adopts_without_a_restart() -> None:
    plan = plan_reload(view(), ("db",), {"db": D1})
    assert plan.decision == "adopt" and plan.applied == Applied({"db": short_digest(D1)}, None)
    patch = adopt_patch(view(), plan.applied)
    assert "spec" not in patch  # metadata only: no rollout
    assert patch["metadata"]["resourceVersion"] == "7"


def test_a_changed_digest_restarts_once() -> None:
    adopted = view(applied=Applied({"db": short_digest(D1)}))
    plan = plan_reload(adopted, ("db",), {"db": D2})
    assert plan.decision == "restart" and plan.changed == ("db",)
    assert plan.applied is not None and plan.applied.template_hash == combined_hash({"db": short_digest(D2)})
    patch = restart_patch(adopted, plan.applied)
    assert patch["spec"]["template"]["metadata"]["annotations"][HASH] == plan.applied.template_hash
    assert Applied.decode(patch["metadata"]["annotations"][APPLIED]) == plan.applied
    # After the restart the workload carries the record: the same digests never restart it again.
    restarted = view(applied=plan.applied, template_hash=plan.applied.template_hash)
    assert plan_reload(restarted, ("db",), {"db": D2}).decision == "none"


def test_replayed_events_and_rollbacks_do_not_restart() -> None:
    applied = Applied({"db": short_digest(D2)}, "sha256:h2")
    rolled_back = view(applied=applied, template_hash="sha256:h1")  # kubectl rollout undo
    assert plan_reload(rolled_back, ("db",), {"db": D2}).decision == "none"
    assert not is_current(rolled_back, ("db",), {"db": D2})  # but it is reported stale


def test_a_secret_added_by_the_user_is_adopted_not_restarted() -> None:
    w = view(reload_on=("db", "api"), applied=Applied({"db": short_digest(D1)}))
    plan = plan_reload(w, ("api", "db"), {"db": D1, "api": D2})
    assert plan.decision == "adopt" and plan.applied is not None and set(plan.applied.secrets) == {"db", "api"}


def test_missing_secret_waits() -> None:
    assert plan_reload(view(applied=Applied({"db": "x"})), ("db",), {"db": None}).decision == "wait"


def test_reload_never_only_records() -> None:
    w = view(reload="never", applied=Applied({"db": short_digest(D1)}))
    assert plan_reload(w, ("db",), {"db": D2}).decision == "adopt"
    assert is_current(w, ("db",), {"db": D2})  # it reads its files live


def test_hand_edited_record_is_adopted_again() -> None:
    assert Applied.decode("{not json") is None
    assert Applied.decode('{"secrets": [1]}') is None


def test_current_needs_a_finished_rollout() -> None:
    applied = Applied({"db": short_digest(D2)}, "sha256:h2")
    assert is_current(view(applied=applied, template_hash="sha256:h2"), ("db",), {"db": D2})
    assert not is_current(view(applied=applied, template_hash="sha256:h2", rollout_complete=False),
                          ("db",), {"db": D2})
    assert not is_current(view(applied=applied, template_hash="sha256:h2"), ("db",), {"db": D1})


def test_combined_hash_depends_on_names_and_digests_only() -> None:
    assert combined_hash({"a": "1", "b": "2"}) == combined_hash({"b": "2", "a": "1"})
    assert combined_hash({"a": "1"}) != combined_hash({"b": "1"})
    assert combined_hash({"a": "1"}) != combined_hash({"a": "2"})


def test_batch_waits_for_quiet_but_not_forever() -> None:
    assert batch_delay(first_change=0, last_change=0, now=1, window=3, max_wait=18) == 2
    assert batch_delay(first_change=0, last_change=2.5, now=3, window=3, max_wait=18) == 2.5  # still changing
    assert batch_delay(first_change=0, last_change=17, now=17, window=3, max_wait=18) == 1  # capped
    assert batch_delay(first_change=0, last_change=0, now=10, window=3, max_wait=18) == 0


def test_rate_limits_per_namespace_and_cluster() -> None:
    limits = RateLimits(per_namespace=2, cluster=3, window=60)
    candidates = [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2")]
    admission = admit_restarts(candidates, [], now=100, limits=limits)
    assert admission.admitted == ["a1", "b1", "a2"]  # round-robin across namespaces
    assert admission.deferred == [("b2", "cluster"), ("a3", "cluster")]
    assert admission.retry_at == 160
    # Twenty seconds later the window still holds three restarts: nothing goes.
    history = [("a", 100.0), ("a", 100.0), ("b", 100.0)]
    later = admit_restarts([("a", "a3"), ("b", "b2")], history, now=120, limits=limits)
    assert later.admitted == [] and later.retry_at == 160
    assert admit_restarts([("a", "a3"), ("b", "b2")], history, now=160, limits=limits).admitted == ["a3", "b2"]


def test_the_per_namespace_limit_defers_a_namespace_over_it() -> None:
    limits = RateLimits(per_namespace=2, cluster=10, window=60)
    admission = admit_restarts([("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1")], [], now=0, limits=limits)
    assert admission.admitted == ["a1", "b1", "a2"] and admission.deferred == [("a3", "namespace")]


def test_restarts_are_admitted_round_robin_not_in_namespace_name_order() -> None:
    # A noisy tenant named to sort first has 100 restarts pending; four quiet ones have one each.
    limits = RateLimits(per_namespace=100, cluster=5, window=60)
    candidates = [("aaa-noisy", f"n{i}") for i in range(100)] + [(f"quiet-{q}", f"q{q}") for q in range(4)]
    admission = admit_restarts(candidates, [], now=0, limits=limits)
    assert sorted(admission.admitted) == ["n0", "q0", "q1", "q2", "q3"]


def test_namespaces_that_restarted_least_recently_go_first() -> None:
    # Cluster-wide room for one: the namespace that just had a slot waits for the one that did not.
    limits = RateLimits(per_namespace=10, cluster=3, window=60)
    history = [("a", 10.0), ("a", 20.0)]
    admission = admit_restarts([("a", "a1"), ("b", "b1")], history, now=30, limits=limits)
    assert admission.admitted == ["b1"] and admission.deferred == [("a1", "cluster")]
    # Equal counts: the one whose last restart is older goes first.
    tie = admit_restarts([("a", "a1"), ("b", "b1")], [("a", 20.0), ("b", 10.0)], now=30,
                         limits=RateLimits(per_namespace=10, cluster=3, window=60))
    assert tie.admitted == ["b1"]


def test_a_quiet_namespace_is_never_starved_over_rounds() -> None:
    limits = RateLimits(per_namespace=1000, cluster=4, window=10)
    pending = [("aaa-noisy", f"n{i}") for i in range(200)] + [("zzz-quiet", f"q{i}") for i in range(6)]
    history: list[tuple[str, float]] = []
    now, rounds, quiet_done_at = 0.0, 0, None
    while pending and rounds < 100:
        admission = admit_restarts(pending, history, now, limits)
        history += [(next(ns for ns, k in pending if k == key), now) for key in admission.admitted]
        done = set(admission.admitted)
        pending = [p for p in pending if p[1] not in done]
        if quiet_done_at is None and not any(ns == "zzz-quiet" for ns, _ in pending):
            quiet_done_at = rounds
        now = admission.retry_at if admission.retry_at is not None else now
        rounds += 1
    # Two of every four slots per round go to the quiet tenant: its six are done in the third round.
    assert quiet_done_at == 2


def test_rate_limit_under_fifty_simultaneous_changes() -> None:
    limits = RateLimits(per_namespace=50, cluster=10, window=5)
    pending = [("ns", f"w{i}") for i in range(50)]
    history: list[tuple[str, float]] = []
    now, rounds = 0.0, 0
    while pending:
        admission = admit_restarts(pending, history, now, limits)
        history += [("ns", now)] * len(admission.admitted)
        done = set(admission.admitted)
        pending = [p for p in pending if p[1] not in done]
        assert sum(1 for _, t in history if now - t < limits.window) <= limits.cluster
        now = admission.retry_at if admission.retry_at is not None else now
        rounds += 1
    assert rounds == 5 and len(history) == 50


def test_consumer_counts() -> None:
    per_secret, per_ns = consumer_counts([("a", ("db",), True), ("a", ("db", "api"), False), ("b", ("db",), True)])
    assert per_secret[("a", "db")] == {"current": 1, "stale": 1}
    assert per_secret[("a", "api")] == {"current": 0, "stale": 1}
    assert per_ns == {"a": {"current": 1, "stale": 1}, "b": {"current": 1, "stale": 0}}


def test_a_secret_digest_is_rotors_own_or_keyed_over_type_and_data() -> None:
    own = ObservedSecret("db", "Opaque", {"k": b"v"}, annotations={"rotor.dev/data-hmac": D1})
    assert secret_digest(b"key", own) == D1
    plain = ObservedSecret("db", "Opaque", {"k": b"v"})
    assert secret_digest(b"key", plain).startswith("sha256:") and secret_digest(b"key", plain) != D1
    assert secret_digest(b"key", plain) != secret_digest(b"other", plain)
    assert secret_digest(b"key", plain) != secret_digest(b"key", ObservedSecret("db", "Opaque", {"k": b"w"}))


def test_consumer_report_writes_only_what_changed() -> None:
    rolled = Applied({"db-credentials": short_digest(D1)}, "sha256:h")
    workloads = [view(name="web", injected_sources=("db",), reload_on=(), applied=rolled, template_hash="sha256:h"),
                 view(name="api", injected_sources=("db",), reload_on=()),  # not adopted yet: stale
                 view(name="new", injected_sources=("unknown",), reload_on=())]  # source not known: not counted
    targets = {"db": "db-credentials", "quiet": "quiet"}
    report = report_consumers("team-a", workloads, targets, {"db-credentials": D1}, {})
    assert report.totals == {"current": 1, "stale": 1}
    assert report.changed == {"db": {"current": 1, "stale": 1}}  # "quiet" has none and never had: no write
    again = report_consumers("team-a", workloads, targets, {"db-credentials": D1},
                             {"db": {"current": 1, "stale": 1}})
    assert again.changed == {}
    gone = report_consumers("team-a", [], targets, {}, {"db": {"current": 1, "stale": 1}})
    assert gone.changed == {"db": {"current": 0, "stale": 0}} and gone.totals == {"current": 0, "stale": 0}
