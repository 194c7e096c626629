"""plan_sync decides the one write (or none) from plain data."""

from __future__ import annotations

import dataclasses
from typing import Any

from rotor.api import keys
from rotor.api.secretsource import SecretSourceSpec
from rotor.planning.hashing import data_hmac, value_hmac
from rotor.planning.sync import Fetched, ObservedSecret, Owner, SyncPlan, plan_sync

KEY = b"k" * 32
OWNER = Owner("team-a", "db", "uid-1")


def spec(**over: Any) -> SecretSourceSpec:
    raw: dict[str, Any] = {"provider": "vault", "vault": {"path": "app/db", "role": "app"}}
    raw.update(over)
    return SecretSourceSpec.model_validate(raw)


def plan(s: SecretSourceSpec, values: dict[str, bytes], existing: ObservedSecret | None = None,
         **kw: Any) -> SyncPlan:
    return plan_sync(spec=s, owner=OWNER, fetched=Fetched(values, "3"), existing=existing, hmac_key=KEY, **kw)


def as_existing(p: SyncPlan, rv: str = "1") -> ObservedSecret:
    assert p.secret is not None
    return ObservedSecret(name=p.secret.name, type=p.secret.type, data=dict(p.secret.data),
                          labels=dict(p.secret.labels), annotations=dict(p.secret.annotations),
                          owner_refs=({"uid": OWNER.uid, "apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource",
                                       "name": "db"},) if p.secret.owned else (), resource_version=rv)


def test_first_sync_creates_the_secret_with_every_key() -> None:
    p = plan(spec(), {"user": b"app", "password": b"s3cret"})
    assert p.action == "create" and p.target == "db"
    assert p.secret is not None and dict(p.secret.data) == {"user": b"app", "password": b"s3cret"}
    assert p.secret.labels[keys.SOURCE_LABEL] == "db"
    assert p.secret.annotations[keys.DATA_HMAC] == p.data_hmac
    assert p.secret.owned and p.version == "3"


def test_nothing_changed_means_no_write() -> None:
    first = plan(spec(), {"password": b"s3cret"})
    again = plan(spec(), {"password": b"s3cret"}, as_existing(first))
    assert again.action == "none" and again.secret is None


def test_a_new_backend_value_updates() -> None:
    first = plan(spec(), {"password": b"old"})
    p = plan(spec(), {"password": b"new"}, as_existing(first))
    assert p.action == "update" and p.secret is not None and p.secret.data["password"] == b"new"


def test_an_edited_secret_is_restored_even_if_the_annotation_was_kept() -> None:
    first = plan(spec(), {"password": b"good"})
    tampered = as_existing(first)
    tampered = dataclasses.replace(tampered, data={"password": b"evil"})
    p = plan(spec(), {"password": b"good"}, tampered)
    assert p.action == "update" and p.secret is not None and p.secret.data["password"] == b"good"


def test_an_extra_key_added_by_hand_is_removed() -> None:
    first = plan(spec(), {"password": b"good"})
    edited = as_existing(first)
    edited = dataclasses.replace(edited, data={**edited.data, "extra": b"x"})
    assert plan(spec(), {"password": b"good"}, edited).action == "update"


def test_mappings_take_named_properties() -> None:
    s = spec(data=[{"key": "DB_PASSWORD", "property": "password"}])
    p = plan(s, {"password": b"pw", "user": b"u"})
    assert p.secret is not None and dict(p.secret.data) == {"DB_PASSWORD": b"pw"}


def test_a_missing_property_fails_naming_it_and_not_the_values() -> None:
    s = spec(data=[{"key": "k", "property": "pasword"}])
    p = plan(s, {"password": b"topsecretvalue"})
    assert p.action == "fail" and p.reason == "NotFound"
    assert "'pasword'" in p.message and "password" in p.message and "topsecretvalue" not in p.message


def test_template_renders_from_values() -> None:
    s = spec(target={"template": {"data": {"dsn": "postgres://{{ values.user }}:{{ values.password }}@db/app"}}})
    p = plan(s, {"user": b"app", "password": b"pw"})
    assert p.secret is not None and p.secret.data["dsn"] == b"postgres://app:pw@db/app"


def test_template_errors_are_clear_and_never_quote_a_value() -> None:
    undefined = plan(spec(target={"template": {"data": {"x": "{{ values.nope }}"}}}), {"password": b"hunter2"})
    assert undefined.reason == "TemplateError" and "nope" in undefined.message
    syntax = plan(spec(target={"template": {"data": {"x": "{{ values.password "}}}), {"password": b"hunter2"})
    assert syntax.reason == "TemplateError" and "syntax error" in syntax.message
    failing = plan(spec(target={"template": {"data": {"x": "{{ values.password | b64decode }}"}}}),
                   {"password": b"hunter2"})
    assert failing.reason == "TemplateError" and "hunter2" not in failing.message
    escape = plan(spec(target={"template": {"data": {"x": "{{ values.__class__.__mro__ }}"}}}),
                  {"password": b"hunter2"})
    assert escape.action == "fail" and escape.reason == "TemplateError"


def test_typed_secrets_need_their_keys() -> None:
    p = plan(spec(target={"type": "kubernetes.io/tls"}), {"cert": b"c"})
    assert p.reason == "InvalidSpec" and "tls.crt" in p.message and "spec.data" in p.message
    ok = plan(spec(target={"type": "kubernetes.io/tls"}), {"tls.crt": b"c", "tls.key": b"k"})
    assert ok.action == "create" and ok.secret is not None and ok.secret.type == "kubernetes.io/tls"


def test_a_foreign_secret_is_never_overwritten() -> None:
    foreign = ObservedSecret(name="db", type="Opaque", data={"password": b"theirs"})
    p = plan(spec(), {"password": b"ours"}, foreign)
    assert p.action == "fail" and p.reason == "Conflict" and "creationPolicy Merge" in p.message


def test_merge_keeps_other_keys_and_removes_only_ours_when_they_go() -> None:
    s = spec(target={"creationPolicy": "Merge"})
    theirs = ObservedSecret(name="db", type="Opaque", data={"other": b"keep"},
                            annotations={keys.ALLOW_SOURCE: "db"})
    p = plan(s, {"password": b"pw", "user": b"u"}, theirs)
    assert p.action == "update" and p.secret is not None
    assert dict(p.secret.data) == {"other": b"keep", "password": b"pw", "user": b"u"} and not p.secret.owned
    written = as_existing(p)  # as the API server keeps it: the owner's annotations stay beside Rotor's
    written = dataclasses.replace(written, annotations={**theirs.annotations, **written.annotations})
    later = plan(s, {"password": b"pw"}, written)
    assert later.secret is not None and dict(later.secret.data) == {"other": b"keep", "password": b"pw"}


def test_merge_into_a_missing_secret_waits() -> None:
    p = plan(spec(target={"creationPolicy": "Merge"}), {"password": b"pw"})
    assert p.action == "fail" and p.reason == "Conflict"


def test_orphan_creates_without_owner() -> None:
    p = plan(spec(target={"creationPolicy": "Orphan"}), {"password": b"pw"})
    assert p.action == "create" and p.secret is not None and not p.secret.owned


def test_a_type_change_recreates() -> None:
    first = plan(spec(), {"tls.crt": b"c", "tls.key": b"k"})
    p = plan(spec(target={"type": "kubernetes.io/tls"}), {"tls.crt": b"c", "tls.key": b"k"}, as_existing(first))
    assert p.action == "recreate"


def test_denylisted_values_are_refused() -> None:
    p = plan(spec(), {"password": b"leaked"}, denylist=frozenset({value_hmac(KEY, b"leaked")}))
    assert p.action == "fail" and p.reason == "Denylisted" and "leaked" not in p.message.replace("reported leaked", "")


def test_hmac_depends_on_key_type_and_every_byte() -> None:
    base = data_hmac(KEY, {"a": b"1"}, "Opaque")
    assert base == data_hmac(KEY, {"a": b"1"}, "Opaque")
    assert base != data_hmac(b"x" * 32, {"a": b"1"}, "Opaque")
    assert base != data_hmac(KEY, {"a": b"2"}, "Opaque")
    assert base != data_hmac(KEY, {"a": b"1"}, "kubernetes.io/tls")
    assert data_hmac(KEY, {"ab": b"c"}) != data_hmac(KEY, {"a": b"bc"})


def test_reprs_never_show_values() -> None:
    f = Fetched({"password": b"hunter2"}, "1")
    assert "hunter2" not in repr(f)
    p = plan(spec(), {"password": b"hunter2"})
    assert "hunter2" not in repr(p) and "hunter2" not in repr(as_existing(p))
