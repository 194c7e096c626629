"""Find the metric names a PromQL expression selects, and the series names Rotor exports."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# Series Prometheus itself adds for every scraped target; allowed in Rotor's queries.
PROMETHEUS_SERIES = frozenset({"up"})

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                       "unless", "offset", "atan2", "inf", "nan", "Inf", "NaN", "start", "end"})


def metric_names(expr: str) -> set[str]:
    """Metric names selected by EXPR: identifiers that are not functions, keywords, label names
    (inside {} or by/without/on/ignoring ()), durations, strings or $variables."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {m.group(1) for m in _IDENT.finditer(text) if not m.group(2) and m.group(1) not in _KEYWORDS}


def exported_series() -> set[str]:
    """Every series name Rotor's registry exposes (counters as _total, histograms as _bucket/_sum/_count)."""
    spec = importlib.util.spec_from_file_location("gen_metrics_doc", REPO / "hack" / "gen_metrics_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_metrics_doc", module)
    spec.loader.exec_module(module)
    series: set[str] = module.exported_series()
    return series
