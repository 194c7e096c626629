"""Render spec.target.template.data in a bounded sandbox.

Templates are written by tenants, so rendering is bounded: a CPU-time budget checked at every
operation the sandbox sees (calls, attribute and item lookups, operators, range() items, output),
an output-size cap, arithmetic that refuses huge results ('x' * 10**9, 10**10**10) and a
total-iteration cap on range(). A loop that touches none of those (a bare nested for) is bounded
by the process that renders (rotor.engines.secretsource.sandbox), which is killed at the deadline.

Errors name the key and the cause, never a value: Jinja's own messages often quote what was looked
up (`values[values.password]` fails with the password in its message), so only messages built here
from the template's text, the value KEYS and the error's class ever leave this module.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_ITERATIONS = 100_000  # range() items per render, over every loop together
MAX_INT_BITS = 4096  # arithmetic results beyond this are refused (a 1,233-digit number)
# A %-format width or precision this long, or from an argument (*), could build any size of string.
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\*|\d{5,})|%[-#0 +]*\d*\.(\*|\d{5,})")


@dataclass(frozen=True)
class TemplateLimits:
    seconds: float = 1.0  # CPU time for every template of one source together
    output_bytes: int = 1 << 20  # rendered bytes for every template of one source together


DEFAULT_LIMITS = TemplateLimits()


class TemplateFailure(Exception):
    """A template that cannot be rendered; MESSAGE names the key and the cause, never a value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LimitExceeded(Exception):
    """Raised inside a render when it goes over a budget; the message is ours (no value in it)."""


class _Budget:
    def __init__(self, limits: TemplateLimits, clock: Callable[[], float]) -> None:
        self.limits, self._clock = limits, clock
        self._deadline = clock() + limits.seconds
        self.iterations = 0
        self.output = 0

    def tick(self) -> None:
        if self._clock() > self._deadline:
            raise LimitExceeded(f"rendering took more than {self.limits.seconds:g}s of CPU time")

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise LimitExceeded(f"loops ran more than {MAX_ITERATIONS} range() items")
        if self.iterations % 256 == 0:
            self.tick()

    def emit(self, size: int) -> None:
        self.output += size
        if self.output > self.limits.output_bytes:
            raise LimitExceeded(f"the output is larger than {self.limits.output_bytes} bytes")
        self.tick()

    def sized(self, size: int) -> None:
        """A string, list or bytes about to be built of SIZE items: refuse what could not be output anyway."""
        if size > self.limits.output_bytes:
            raise LimitExceeded(f"an operation would build more than {self.limits.output_bytes} characters")


class _CountedRange:
    """range() whose items count against the render's iteration budget."""

    def __init__(self, items: range, budget: _Budget) -> None:
        self._items, self._budget = items, budget

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[int]:
        for item in self._items:
            self._budget.iterate()
            yield item


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes) with every operation counted against one budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/", "-"})
    intercepted_unops = frozenset({"-", "+"})

    def __init__(self, budget: _Budget) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.budget = budget
        # lipsum(n) is a CPU bomb and namespace() lets loops accumulate; neither has a use here.
        for name in ("lipsum", "namespace", "cycler", "joiner"):
            self.globals.pop(name, None)
        self.globals["range"] = self._range
        self.filters["b64encode"] = lambda v: base64.b64encode(str(v).encode()).decode()
        self.filters["b64decode"] = lambda v: base64.b64decode(str(v)).decode()

    def _range(self, *args: int) -> _CountedRange:
        items = range(*args)
        if len(items) > MAX_ITERATIONS:
            raise LimitExceeded(f"range() of more than {MAX_ITERATIONS} items")
        return _CountedRange(items, self.budget)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.budget.tick()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _length(seq)
                if size is not None and isinstance(times, int):
                    self.budget.sized(size * times)
            if isinstance(left, int) and isinstance(right, int):
                self._bits(abs(left).bit_length() + abs(right).bit_length())
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            self._bits(max(1, abs(left).bit_length()) * right if abs(left) > 1 else 1)
        elif operator == "+":
            sizes = (_length(left), _length(right))
            if sizes[0] is not None and sizes[1] is not None:
                self.budget.sized(sizes[0] + sizes[1])
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise LimitExceeded("a %-format with a width or precision of 10,000 or more")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, int):
            self._bits(result.bit_length())
        return result

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        self.budget.tick()
        return super().call_unop(context, operator, arg)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.tick()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.tick()
        return super().getitem(obj, argument)

    @staticmethod
    def _bits(bits: int) -> None:
        if bits > MAX_INT_BITS:
            raise LimitExceeded(f"arithmetic with a result over {MAX_INT_BITS} bits")


def render(templates: Mapping[str, str], values: Mapping[str, bytes], limits: TemplateLimits = DEFAULT_LIMITS,
           *, clock: Callable[[], float] = time.thread_time) -> dict[str, bytes]:
    """Render every template (key -> text) from VALUES; raises TemplateFailure. CLOCK measures the CPU
    time of the rendering thread (the budget is CPU, so a busy machine does not fail templates)."""
    budget = _Budget(limits, clock)
    env = BoundedSandbox(budget)
    context = {"values": {k: v.decode("utf-8", errors="replace") for k, v in values.items()}}
    out: dict[str, bytes] = {}
    for key, text in sorted(templates.items()):
        where = f"spec.target.template.data[{key!r}]"
        try:
            parsed = env.parse(text)
            chunks = []
            for chunk in env.from_string(parsed).generate(context):
                budget.emit(len(chunk))
                chunks.append(chunk)
            out[key] = "".join(chunks).encode("utf-8", errors="replace")
        except TemplateSyntaxError as exc:  # from the template's text, never from a value
            raise TemplateFailure(f"{where}: syntax error on line {exc.lineno}: {exc.message}") from None
        except LimitExceeded as exc:
            raise TemplateFailure(f"{where}: {exc}; simplify the template") from None
        except UndefinedError:
            raise TemplateFailure(f"{where}: {undefined_message(env, parsed, values)}") from None
        except SecurityError:
            raise TemplateFailure(f"{where}: uses an operation the sandbox forbids") from None
        except Exception as exc:  # a filter or operator failing on a value: its message may quote the value
            raise TemplateFailure(f"{where}: rendering failed with {type(exc).__name__} (message withheld: it "
                                  "may quote a value)") from None
    size = sum(len(v) for v in out.values())
    if size > limits.output_bytes:
        raise TemplateFailure(f"spec.target.template.data: the output is larger than {limits.output_bytes} bytes")
    return out


def undefined_message(env: SandboxedEnvironment, parsed: nodes.Template, values: Mapping[str, bytes]) -> str:
    """Why a render met an undefined name, from the template's text and the value keys only: Jinja's
    message quotes the missing name, which for a computed lookup (values[values.password]) is a value."""
    available = ", ".join(sorted(values)) or "none"
    missing = sorted(static_value_keys(parsed) - set(values))
    if missing:
        return f"{', '.join(missing)} is undefined (no such key in the backend secret); available: {available}"
    names = sorted(meta.find_undeclared_variables(parsed) - set(env.globals) - {"values"})
    if names:
        return f"{', '.join(names)} is undefined (values are under values.<key>); available: {available}"
    return ("an attribute or item lookup found nothing (UndefinedError; details withheld: a computed lookup may "
            f"quote a value); available: {available}")


def static_value_keys(parsed: nodes.Template) -> set[str]:
    """The keys a template names literally: values.KEY and values['KEY']."""
    found: set[str] = set()
    for node in parsed.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and _is_values(node.node):
            found.add(node.attr)
        elif (isinstance(node, nodes.Getitem) and _is_values(node.node) and isinstance(node.arg, nodes.Const)
              and isinstance(node.arg.value, str)):
            found.add(node.arg.value)
    return found


def _is_values(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "values"
