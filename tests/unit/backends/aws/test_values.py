"""The pure parts of the AWS backend: role ARN patterns, session names, secrets and parameters as properties."""

from __future__ import annotations

import json

import pytest

from rotor.backends.aws import values
from rotor.backends.aws.values import (
    check_keys,
    check_role,
    parameter_property,
    path_properties,
    role_allowed,
    secret_properties,
    session_name,
)
from rotor.backends.protocols import InvalidSpec

PATTERN = r"arn:aws:iam::123456789012:role/rotor-{namespace}-.+"


def test_a_role_of_the_namespace_matches_the_pattern() -> None:
    assert role_allowed(PATTERN, "team-a", "arn:aws:iam::123456789012:role/rotor-team-a-app")


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::123456789012:role/rotor-team-b-app",  # another namespace's role
    "arn:aws:iam::999999999999:role/rotor-team-a-app",  # another account
    "arn:aws:iam::123456789012:role/rotor-team-a-",  # nothing after the prefix
    "xarn:aws:iam::123456789012:role/rotor-team-a-app",  # the match is over the whole ARN
])
def test_other_roles_do_not(arn: str) -> None:
    assert not role_allowed(PATTERN, "team-a", arn)


def test_namespace_is_matched_literally() -> None:
    # A namespace cannot carry regex syntax into the pattern (a '.' in it matches only a '.').
    assert not role_allowed("arn:aws:iam::1:role/{namespace}", "a.b", "arn:aws:iam::1:role/axb")
    assert role_allowed("arn:aws:iam::1:role/{namespace}", "a.b", "arn:aws:iam::1:role/a.b")


def test_a_role_outside_the_pattern_is_invalid_spec_naming_the_field() -> None:
    with pytest.raises(InvalidSpec) as raised:
        check_role(PATTERN, "team-a", "arn:aws:iam::123456789012:role/admin", "default")
    assert "spec.aws.roleArn" in raised.value.message
    assert "rotor-team-a-.+" in raised.value.message  # the pattern as it applies to this namespace


def test_session_name_names_namespace_and_service_account() -> None:
    assert session_name("team-a", "app") == "rotor-team-a-app"


def test_session_name_is_at_most_64_characters_of_those_sts_accepts() -> None:
    name = session_name("n" * 63, "s" * 253)
    assert len(name) == 64 and name.startswith("rotor-nnn")
    assert session_name("ns", "weird:name/x") == "rotor-ns-weird-name-x"


def test_a_json_secret_gives_its_top_level_keys() -> None:
    raw = json.dumps({"username": "app", "password": "pw", "port": 5432, "tags": {"a": 1}, "on": True})
    assert secret_properties("db", "JSON", raw, None) == {
        "username": b"app", "password": b"pw", "port": b"5432", "tags": b'{"a":1}', "on": b"true"}


def test_a_binary_secret_may_hold_json_too() -> None:
    assert secret_properties("db", "JSON", None, b'{"k": "v"}') == {"k": b"v"}


@pytest.mark.parametrize("raw", ["hunter2-is-not-json", "[1, 2]", '"a string"', ""])
def test_a_secret_that_is_not_a_json_object_says_use_raw_without_the_value(raw: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        secret_properties("app/db", "JSON", raw, None)
    assert "format Raw" in raised.value.message and "app/db" in raised.value.message
    assert not raw or raw not in raised.value.message


def test_raw_takes_the_whole_secret_string_or_binary_as_value() -> None:
    assert secret_properties("db", "Raw", '{"k": "v"}', None) == {"value": b'{"k": "v"}'}
    assert secret_properties("db", "Raw", None, b"\x00\xffbin") == {"value": b"\x00\xffbin"}


def test_a_parameter_is_its_last_name_segment() -> None:
    assert parameter_property("/prod/app/db-password") == "db-password"
    assert parameter_property("plain") == "plain"
    assert parameter_property("arn:aws:ssm:eu-west-1:123456789012:parameter/prod/app/key") == "key"


def test_parameters_under_a_path_are_named_below_it() -> None:
    found = [("/prod/app/user", "u"), ("/prod/app/db/password", "p")]
    assert path_properties("/prod/app", found) == {"user": b"u", "db/password": b"p"}
    assert path_properties("/prod/app/", found) == {"user": b"u", "db/password": b"p"}
    assert path_properties("/", [("/top", "t")]) == {"top": b"t"}


def test_nested_names_need_spec_data() -> None:
    with pytest.raises(InvalidSpec) as raised:
        check_keys({"user": b"u", "db/password": b"p"}, False, "aws:default/ssm/prod/app/")
    assert "db/password" in raised.value.message and "spec.data" in raised.value.message
    check_keys({"user": b"u", "db/password": b"p"}, True, "x")  # mapped: spec.data names the keys
    check_keys({"user": b"u", "db.password": b"p"}, False, "x")


# -- rotation ---------------------------------------------------------------------------------------------

def test_a_rotation_writes_under_one_token_per_secret() -> None:
    token = values.version_token("team-a/db", "a1b2c3d4e5f6")
    assert token == values.version_token("team-a/db", "a1b2c3d4e5f6")  # a retry writes the same version
    assert token != values.version_token("team-a/db", "a1b2c3d4e5f7")
    assert token != values.version_token("team-a/other", "a1b2c3d4e5f6")
    assert values.plausible_version(token) and 32 <= len(token) <= 64  # what AWS takes as a ClientRequestToken
    assert not values.plausible_version("1") and not values.plausible_version("x" * 65)
    assert values.kept_label(token) == f"rotor-{token}"


def test_a_new_version_keeps_the_json_types_of_values_it_leaves_alone() -> None:
    typed = {"port": 5432, "tls": True, "tags": ["a"], "password": "old", "id": "7"}
    data = {"port": "5432", "tls": "true", "tags": '["a"]', "password": "new", "id": "7"}
    assert json.loads(values.encode("db", "JSON", data, typed)) == {
        "port": 5432, "tls": True, "tags": ["a"], "password": "new", "id": "7"}
    assert json.loads(values.encode("db", "JSON", {"port": "5433"}, typed)) == {"port": "5433"}  # changed: text
    assert values.encode("t", "Raw", {"value": "whole"}, None) == "whole"
    with pytest.raises(InvalidSpec, match="generator"):
        values.encode("t", "Raw", {"password": "x"}, None)


def test_binary_secrets_are_not_rotated_and_the_error_shows_no_byte() -> None:
    with pytest.raises(InvalidSpec, match="binary") as refused:
        values.as_strings("ks", "Raw", None, b"\xff\xfe\x00secret")
    assert str(refused.value) == "secret ks holds binary data: Rotor rotates text secrets only"


def test_a_rotator_role_is_named_in_the_source_roles_account() -> None:
    source = "arn:aws:iam::123456789012:role/team-a-app"
    assert values.acting_role(source, None) == source
    assert values.acting_role(source, "team-a-rotator") == "arn:aws:iam::123456789012:role/team-a-rotator"
