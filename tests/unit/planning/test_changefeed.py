"""The change feed's decisions: what a record says, which sources read a changed path, when to flush,
and whether the feed vouches for every change."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.changefeed import (
    Change,
    Verdict,
    backstop_delay,
    feed_condition,
    flush_delay,
    healthy_since,
    matching,
    outage_delay,
    read_record,
    targets,
)
from tests.unit.engines.changefeed.harness import Source, vault_source
from tests.unit.engines.changefeed.records import login, read, record, write

# -- records -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "operation"), [
    ("secret/data/team-a/db", "create"), ("secret/data/team-a/db", "update"), ("secret/data/team-a/db", "patch"),
    ("secret/data/team-a/db", "delete"), ("secret/metadata/team-a/db", "update"),
    ("secret/metadata/team-a/db", "delete"), ("secret/destroy/team-a/db", "update"),
    ("secret/delete/team-a/db", "update"), ("secret/undelete/team-a/db", "update"), ("kv1/team-a/db", "create"),
])
def test_a_kv_change_is_its_operation_and_path_only(path: str, operation: str) -> None:
    found = read_record(record(path, operation, data={"data": {"password": "pw-secret-1"}}))
    assert found == Change(operation, path)
    assert set(vars(found)) == {"operation", "path"}  # nothing else of the record is kept


@pytest.mark.parametrize("line", [
    read("secret/data/team-a/db"),  # reads are most of the stream (Rotor's own included)
    record("secret/metadata/team-a/", "list"),
    write("secret/data/team-a/db", type="request"),  # logged before the change is made
    write("secret/data/team-a/db", error="1 error occurred:\n\t* permission denied\n\n"),  # nothing changed
    login(),  # a write, but not to a KV mount
    record("transit/encrypt/app", "update", data={"plaintext": "aGk="}, mount_type="transit"),
])
def test_reads_requests_and_failed_writes_are_ignored(line: bytes) -> None:
    assert read_record(line) is Verdict.IGNORED


def test_fields_are_found_whatever_the_key_order() -> None:
    # Older Vaults write struct order (operation and path before data); 1.21 sorts keys.
    line = write("secret/data/team-a/db", sort=False)
    assert json.loads(line)["request"]["operation"] == "create"
    assert read_record(line) == Change("create", "secret/data/team-a/db")


def test_a_record_naming_no_mount_type_is_still_read() -> None:
    line = write("secret/data/team-a/db").replace(b'"mount_type":"kv"', b'"mount_class":"secret"')
    assert b'"mount_type"' not in line
    assert read_record(line) == Change("create", "secret/data/team-a/db")


def test_the_vault_namespace_is_part_of_the_path() -> None:
    assert read_record(write("secret/data/db", namespace="team-a/")) == Change("create", "team-a/secret/data/db")


def test_escaped_paths_are_decoded() -> None:
    line = write("secret/data/team-a/db").replace(b'"path":"secret/data/team-a/db"',
                                                  b'"path":"secret\\/data\\/team-a\\/db"')
    assert read_record(line) == Change("create", "secret/data/team-a/db")


def test_a_decoy_in_a_value_or_a_key_does_not_fool_the_reader() -> None:
    # A data key named like a field, and a nested "type"/"path" are not the record's own.
    line = record("secret/data/team-a/db", "update",
                  data={"data": {"path": "elsewhere", "operation": "read", "type": "request"}})
    assert read_record(line) == Change("update", "secret/data/team-a/db")


@pytest.mark.parametrize("line", [
    write("secret/data/team-a/db", raw=True),  # log_raw: the token and the values in clear
    read("secret/data/team-a/db", raw=True),  # caught on any record, by its client token
])
def test_a_raw_stream_is_recognised(line: bytes) -> None:
    assert read_record(line) is Verdict.RAW


def test_a_value_in_clear_is_recognised_even_with_an_hmacd_token() -> None:
    entry: dict[str, Any] = json.loads(write("secret/data/team-a/db"))
    entry["request"]["data"]["data"]["password"] = "hunter2"
    assert read_record(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()) is Verdict.RAW
    entry = json.loads(write("secret/data/team-a/db"))
    entry["response"]["data"]["created_time"] = "2026-12-03T23:29:46Z"
    assert read_record(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()) is Verdict.RAW


def test_numbers_booleans_nulls_and_empty_strings_are_not_values_in_clear() -> None:
    line = record("secret/metadata/team-a/db", "update",
                  data={"max_versions": 5, "cas_required": False, "custom_metadata": None, "x": ""})
    assert read_record(line.replace(b'"x":"hmac-sha256:', b'"x":"", "y":"hmac-sha256:')) == Change(
        "update", "secret/metadata/team-a/db")


def test_the_shared_token_is_required_when_set() -> None:
    line = write("secret/data/team-a/db", prefix="s3cr3t-token")
    assert read_record(line, b"s3cr3t-token") == Change("create", "secret/data/team-a/db")
    assert read_record(write("secret/data/team-a/db"), b"s3cr3t-token") is Verdict.FORGED
    assert read_record(write("secret/data/team-a/db", prefix="s3cr3t-tokeX"), b"s3cr3t-token") is Verdict.FORGED


@pytest.mark.parametrize("line", [
    b'<json:object name="auth">',  # format=jsonx
    write("secret/data/team-a/db")[:-1],  # cut short
    write("secret/data/team-a/db") + b"{}",  # two objects on a line
    b"hello",
])
def test_anything_but_one_json_object_is_unreadable(line: bytes) -> None:
    assert read_record(line) is Verdict.UNREADABLE


# -- which sources --------------------------------------------------------------------------------


def test_a_path_names_every_mount_and_path_split() -> None:
    found = targets(["secret/data/team-a/db"])
    assert ("secret", "team-a/db") in found.exact  # KV v2 at "secret"
    assert ("secret", "data/team-a/db") in found.exact  # KV v1 at "secret"
    assert ("secret/data", "team-a/db") in found.exact  # KV v1 at "secret/data"
    assert not found.prefixes


def test_a_path_ending_in_a_slash_names_every_path_under_it() -> None:
    found = targets(["secret/metadata/team-a/"])
    assert ("secret", "team-a/") in found.prefixes and not found.exact
    assert not targets(["secret/data/"]).prefixes & {("secret", "")}  # never a whole KV v2 mount


def test_a_connection_in_a_vault_namespace_sees_only_its_namespace() -> None:
    assert ("secret", "db") in targets(["team-a/secret/data/db"], "team-a").exact
    assert not targets(["team-b/secret/data/db"], "team-a")
    assert not targets(["secret/data/db"], "/team-a/")


def test_matching_finds_the_sources_reading_a_changed_path() -> None:
    sources = [
        vault_source("a", "db", "team-a/db"),
        vault_source("a", "db-copy", "team-a/db"),
        vault_source("a", "api", "team-a/api"),
        vault_source("a", "other-vault", "team-a/db", connection="other"),
        vault_source("a", "v1", "team-a/db", mount="kv1"),
        Source("a", "kube", SecretSourceSpec.model_validate(
            {"provider": "kubernetes", "kubernetes": {"namespace": "x", "name": "y"}})),
        Source("a", "broken", None),
    ]
    assert matching(sources, "default", targets(["secret/data/team-a/db"])) == [("a", "db"), ("a", "db-copy")]
    assert matching(sources, "default", targets(["kv1/team-a/db"])) == [("a", "v1")]
    assert matching(sources, "default", targets(["secret/metadata/team-a/"])) == [
        ("a", "db"), ("a", "db-copy"), ("a", "api")]
    assert matching(sources, "default", targets(["secret/data/team-b/db", "sys/mounts/secret"])) == []


# -- timing and health ------------------------------------------------------------------------------


def test_a_burst_flushes_after_a_quiet_window_but_never_later_than_max_wait() -> None:
    assert flush_delay(10.0, 10.0, 10.0, quiet=0.1, max_wait=0.5) == pytest.approx(0.1)
    assert flush_delay(10.0, 10.3, 10.35, quiet=0.1, max_wait=0.5) == pytest.approx(0.05)
    assert flush_delay(10.0, 10.45, 10.46, quiet=0.1, max_wait=0.5) == pytest.approx(0.04)  # capped
    assert flush_delay(10.0, 10.0, 11.0, quiet=0.1, max_wait=0.5) == 0.0


def test_the_feed_vouches_only_while_connected_whole_and_heard_from() -> None:
    base: dict[str, Any] = {"connections": 1, "since": 100.0, "refused": False, "last_activity": 150.0,
                            "now": 160.0, "idle": 300.0}
    assert healthy_since(**base) == 100.0
    assert healthy_since(**{**base, "connections": 0}) is None
    assert healthy_since(**{**base, "since": None}) is None
    assert healthy_since(**{**base, "refused": True}) is None
    assert healthy_since(**{**base, "now": 451.0}) is None  # silent past idle


def test_the_backstop_skips_a_timer_read_only_when_the_feed_saw_every_change_since() -> None:
    kw: dict[str, Any] = {"interval": 3600.0, "healthy_interval": 86400.0, "now": 10_000.0}
    assert backstop_delay(last_read=9_000.0, healthy_since=5_000.0, **kw) == 3600.0  # at most the own interval
    assert backstop_delay(last_read=9_000.0, healthy_since=5_000.0, **{**kw, "now": 95_000.0}) == 400.0
    assert backstop_delay(last_read=9_000.0, healthy_since=5_000.0, **{**kw, "now": 96_000.0}) is None
    assert backstop_delay(last_read=9_000.0, healthy_since=9_500.0, **kw) is None  # a gap after the read
    assert backstop_delay(last_read=9_000.0, healthy_since=None, **kw) is None  # feed down
    assert backstop_delay(last_read=None, healthy_since=5_000.0, **kw) is None  # never read
    assert backstop_delay(last_read=9_000.0, healthy_since=5_000.0, **{**kw, "healthy_interval": None}) is None


def test_after_an_outage_a_source_is_due_at_its_own_interval_and_overdue_ones_are_spread() -> None:
    assert outage_delay(interval=3600.0, last_read=1_000.0, now=2_000.0, u=0.5) == 2600.0
    assert outage_delay(interval=3600.0, last_read=1_000.0, now=50_000.0, u=0.0) == 0.0
    assert outage_delay(interval=3600.0, last_read=1_000.0, now=50_000.0, u=0.5) == 30.0  # within a minute
    assert outage_delay(interval=20.0, last_read=1_000.0, now=50_000.0, u=0.5) == 10.0  # within its interval


def test_the_feed_condition_names_the_connection_and_says_what_it_means() -> None:
    status, reason, message = feed_condition("default", healthy=True, healthy_interval=86400.0)
    assert (status, reason) == ("True", "FeedHealthy")
    assert "Vault connection default" in message and "86400s" in message
    status, reason, message = feed_condition("eu", healthy=False, healthy_interval=86400.0)
    assert (status, reason) == ("False", "FeedDown") and "Vault connection eu" in message
    assert "own interval" in message
