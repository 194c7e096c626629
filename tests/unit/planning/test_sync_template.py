"""planning.template: a bounded sandbox whose errors name keys and causes, never values."""

from __future__ import annotations

import pytest

from rotor.planning.template import DEFAULT_LIMITS, MAX_ITERATIONS, TemplateFailure, TemplateLimits, render

CANARY = "canary-91c2"
VALUES = {"password": CANARY.encode(), "user": b"app"}


def failure(text: str, limits: TemplateLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(TemplateFailure) as caught:
        render({"k": text}, VALUES, limits)
    assert CANARY not in caught.value.message
    assert caught.value.message.startswith("spec.target.template.data")
    return caught.value.message


def test_renders_values_and_filters() -> None:
    out = render({"dsn": "{{ values.user }}:{{ values.password }}", "b": "{{ values.user | b64encode }}"}, VALUES)
    assert out == {"dsn": f"app:{CANARY}".encode(), "b": b"YXBw"}


def test_an_undefined_key_is_named_from_the_template_with_the_available_keys() -> None:
    message = failure("{{ values.pasword }}")
    assert "pasword is undefined" in message and "available: password, user" in message
    assert "values.<key>" in failure("{{ password }}")


@pytest.mark.parametrize("text", [
    "{{ values[values.password] }}", "{{ values.password.nope }}", "{{ {}[values.password] }}",
    "{{ values[values.user ~ values.password] }}",
])
def test_a_computed_lookup_never_quotes_what_it_looked_up(text: str) -> None:
    assert "details withheld" in failure(text)


@pytest.mark.parametrize("text", [
    "{{ values.password | int + [] }}", "{{ values.password | b64decode }}", "{{ '%d' % values.password }}",
    "{{ values.password | map(values.password) | list }}", "{% include values.password %}",
])
def test_a_failing_operation_reports_its_class_only(text: str) -> None:
    assert "message withheld" in failure(text)


def test_sandbox_escapes_are_refused() -> None:
    assert "sandbox forbids" in failure("{{ values.__class__.__mro__[1].__subclasses__() }}") \
        or "withheld" in failure("{{ values.__class__.__mro__[1].__subclasses__() }}")


@pytest.mark.parametrize(("text", "said"), [
    ("{{ values.password * 10000000 }}", "more than 1048576 characters"),
    ("{{ 'x' * 10**9 }}", "more than 1048576 characters"),
    ("{{ 2 ** 100000 }}", "bits"),
    ("{{ 7 ** (7 ** 7) }}", "bits"),
    ("{{ '%1000000000d' % 1 }}", "%-format"),
    (f"{{% for i in range({MAX_ITERATIONS + 1}) %}}{{% endfor %}}", "range()"),
    ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "range() items"),
    ("{{ lipsum(1000000) }}", "undefined"),
])
def test_bounded_arithmetic_and_loops(text: str, said: str) -> None:
    assert said in failure(text)


def test_the_cpu_budget_stops_a_long_render() -> None:
    ticks = iter(range(10**9))
    with pytest.raises(TemplateFailure) as caught:
        render({"k": "{% for i in range(90000) %}{{ i }}{% endfor %}"}, VALUES, TemplateLimits(seconds=100),
               clock=lambda: float(next(ticks)))
    assert "more than 100s of CPU time" in caught.value.message


def test_the_output_budget_covers_every_key_together() -> None:
    limits = TemplateLimits(output_bytes=1500)
    templates = {"a": "{{ values.user * 200 }}", "b": "{{ values.user * 200 }}", "c": "{{ values.user * 200 }}"}
    with pytest.raises(TemplateFailure) as caught:
        render(templates, VALUES, limits)
    assert "larger than 1500 bytes" in caught.value.message
