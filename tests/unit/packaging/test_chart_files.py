"""The chart's files: every value documented, and the CRDs it ships are the repository's CRDs."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "rotor"
# Values that are Kubernetes objects passed through as-is: documented once, at the top key.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "updateStrategy", "labels"}


def test_every_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented: list[str] = []
    parents: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = stripped.partition(":")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        inherited = any(name in PASSTHROUGH for _, name in parents)
        is_group = value.strip() == ""
        above = lines[number - 1].strip() if number else ""
        if not is_group and not inherited and not above.startswith("#"):
            undocumented.append(f"line {number + 1}: {'.'.join([p for _, p in parents] + [key])}")
        parents.append((indent, key))
    assert not undocumented, "values without a comment above them:\n" + "\n".join(undocumented)


def test_values_parse_and_have_the_documented_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["replicas"] == 2 and values["highAvailability"]["enabled"] is True
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert isinstance(values["podSecurityContext"]["runAsUser"], int) and values["podSecurityContext"]["runAsUser"] > 0
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert values["podSecurityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert values["resources"]["limits"] and values["resources"]["requests"]


def test_chart_ships_exactly_the_repository_crds() -> None:
    """crds/ (generated from the models) is the one source: the chart links to it, file by file.

    A new CRD in crds/ needs its link: cd charts/rotor/crds && ln -s ../../../crds/NAME.yaml .
    """
    shipped = {p.name: p for p in (CHART / "crds").glob("rotor.dev_*.yaml")}
    source = {p.name: p for p in (REPO / "crds").glob("*.yaml")}
    assert set(shipped) == set(source), "charts/rotor/crds/ and crds/ list different CRDs"
    for name, path in shipped.items():
        assert path.read_text() == source[name].read_text(), f"charts/rotor/crds/{name} differs from crds/{name}"
        assert path.is_symlink(), f"charts/rotor/crds/{name} should be a link to crds/{name}, not a copy"


def test_chart_ships_kopf_peering_crds() -> None:
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()))
    assert {d["spec"]["names"]["kind"]: d["spec"]["scope"] for d in docs} == {
        "ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
