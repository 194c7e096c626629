"""The image recipe has the properties a security review asks for (no container engine here to build it)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CREDENTIAL_WORDS = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|NETRC|AUTH",
                              re.IGNORECASE)
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|cargo|rustc|python3?-dev|libc6?-dev)\b")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


DOCKERFILE = (REPO / "Dockerfile").read_text()
GLOBAL_ARGS = dict(arg.split("=", 1) for name, arg in instructions(DOCKERFILE.split("\nFROM")[0]) if name == "ARG"
                   and "=" in arg)


def resolve(image: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GLOBAL_ARGS.get(m.group(1), m.group(0)), image)


def test_multi_stage_on_a_pinned_slim_python() -> None:
    all_stages = stages(DOCKERFILE)
    assert len(all_stages) >= 2, "a build stage and a final stage"
    for stage in all_stages:
        image = resolve(stage[0][1].split()[0])
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), (
            f"base image {image!r} must be python slim pinned to an exact version (or digest)")


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    final = stages(DOCKERFILE)[-1]
    users = [args for name, args in final if name == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be numeric and non-zero (runAsNonRoot checks it)"


def test_dependencies_come_from_the_lock_file_as_wheels() -> None:
    runs = " ".join(args for name, args in instructions(DOCKERFILE) if name == "RUN")
    assert "pip install" in runs and "-c constraints.txt" in runs
    assert "--only-binary=:all:" in runs, "wheels only, so no compiler is ever needed"
    copied = " ".join(args for name, args in instructions(DOCKERFILE) if name == "COPY")
    assert "constraints.txt" in copied


def test_no_compilers_and_nothing_built_in_the_final_stage() -> None:
    final = stages(DOCKERFILE)[-1]
    for name, args in final:
        if name == "RUN":
            assert not COMPILERS.search(args), f"final stage installs a compiler: RUN {args}"
            assert "pip install" not in args, "the final stage copies the built environment, it builds nothing"
    copies = [args for name, args in final if name == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), "the final stage takes only build outputs"


def test_no_build_time_secrets() -> None:
    for name, args in instructions(DOCKERFILE):
        if name in ("ARG", "ENV"):
            for word in shlex.split(args):
                key = word.split("=", 1)[0]
                if key == "PATH" or key.startswith("PIP_") or key.startswith("PYTHON"):
                    continue
                assert not CREDENTIAL_WORDS.search(key), f"{name} {key} looks like a credential"
        if name in ("RUN", "COPY", "ADD"):
            assert ".netrc" not in args, f"{name} {args} uses a .netrc"
            assert not re.search(r"https?://[^/\s]*:[^@\s]*@", args), f"credentials in a URL: {name} {args}"
    assert "ADD" not in {name for name, _ in instructions(DOCKERFILE)}, "COPY only: ADD fetches and unpacks"


@pytest.mark.parametrize("label", ["source", "version", "licenses"])
def test_oci_labels(label: str) -> None:
    final = " ".join(args for name, args in stages(DOCKERFILE)[-1] if name == "LABEL")
    assert re.search(rf"org\.opencontainers\.image\.{label}=\"[^\"]+\"", final), f"missing OCI label {label}"


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps PATH out of the build context (last matching rule wins)."""
    import fnmatch

    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        candidates = [pattern, pattern.replace("**/", ""), f"{pattern}/*"]
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, c) for p in prefixes for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("path", ["tests/unit/test_refresh.py", ".venv/bin/python", ".git/config", ".devenv/stack.json",
                                  ".mypy_cache/x", ".pytest_cache/v", "operator/rotor/__pycache__/x.pyc",
                                  "charts/rotor/values.yaml", "e2e/test_deliver.py", "hack/run.py"])
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignore_excludes(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "constraints.txt", "README.md", "operator/rotor/cli.py"])
def test_dockerignore_keeps_what_the_build_copies(path: str) -> None:
    assert not dockerignore_excludes(path)
