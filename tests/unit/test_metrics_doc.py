"""docs/metrics.md is generated from rotor.observability.metrics; it must say exactly what the module declares."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from rotor.observability import metrics

REPO = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_metrics_doc", REPO / "hack" / "gen_metrics_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_metrics_doc", module)
    spec.loader.exec_module(module)
    return module


def test_docs_metrics_md_matches_the_metrics_module() -> None:
    generated = load_generator().render()
    on_disk = (REPO / "docs" / "metrics.md").read_text()
    assert on_disk == generated, "docs/metrics.md is out of date: run `python hack/gen_metrics_doc.py`"


def test_every_registered_metric_has_a_row_with_its_type_labels_and_help() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    families = [f for f in metrics.REGISTRY.collect() if f.name not in {m.name for m in metrics.OBJECT_METRICS}]
    assert len(rows) == len(families) + len(metrics.OBJECT_METRICS) > 30
    sync = rows["rotor_sync_total"]
    assert "| counter |" in sync and "`provider`, `result`" in sync and metrics.SYNCS._documentation in sync
    assert "| histogram | seconds |" in rows["rotor_backend_request_duration_seconds"]
    assert "`version`" in rows["rotor_build_info"]
    assert "| Unix time (s) |" in rows["rotor_lease_expiry_timestamp_seconds"]
    # The per-object metrics are registered only when enabled, and documented in their own section.
    section = doc.split("## Per-object metrics", 1)[1]
    assert all(f"| `{m.name}` | gauge |" in section and "`namespace`, `name`" in rows[m.name]
               for m in metrics.OBJECT_METRICS)


def test_a_new_metric_makes_the_doc_drift() -> None:
    from prometheus_client import Gauge

    generator = load_generator()
    before = generator.render()
    extra = Gauge("rotor_doc_probe_seconds", "Only for this test.", ["backend"], registry=metrics.REGISTRY)
    setattr(metrics, "_DOC_PROBE", extra)  # noqa: B010 - declared in the module, as the generator expects
    try:
        after = generator.render()
        assert after != before and "| `rotor_doc_probe_seconds` | gauge | seconds | `backend` |" in after
    finally:
        metrics.REGISTRY.unregister(extra)
        delattr(metrics, "_DOC_PROBE")
