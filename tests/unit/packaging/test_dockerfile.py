"""The image recipe has the properties a security review asks for (no container engine here to build it),
and what it ships is the package alone: the wheel it builds from its build context holds no tests and
not the local stack (tests/devenv starts etcd, kube-apiserver and Vault; it must never reach an image)."""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
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


@pytest.mark.parametrize("path", ["tests/unit/test_refresh.py", "tests/devenv/stack.py", ".venv/bin/python",
                                  ".git/config", ".devenv/stack.json", ".mypy_cache/x", ".pytest_cache/v",
                                  "operator/rotor/__pycache__/x.pyc", "operator/rotor.egg-info/SOURCES.txt",
                                  "charts/rotor/values.yaml", "e2e/test_deliver.py", "hack/run.py"])
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignore_excludes(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "constraints.txt", "README.md", "operator/rotor/cli.py"])
def test_dockerignore_keeps_what_the_build_copies(path: str) -> None:
    assert not dockerignore_excludes(path)


# -- what the image ships: the build context, and the wheel built from it ------------------------------

LEFT_OUT = ("tests", "hack", "e2e")  # never in an image: the local stack, scripts, test suites


def build_context() -> list[str]:
    """Every file `docker build .` sends (what .dockerignore lets through), relative to the repo."""
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines()]
    sent: list[str] = []
    for top in sorted(REPO.iterdir()):
        reincluded = any(r.startswith(f"!{top.name}/") for r in rules)  # a rule may let a file below back in
        if dockerignore_excludes(top.name) and not reincluded:
            continue
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        sent += [rel for rel in (f.relative_to(REPO).as_posix() for f in files) if not dockerignore_excludes(rel)]
    return sent


def copied_sources() -> list[str]:
    """The sources of the build stage's COPY instructions (what the wheel is built from)."""
    sources: list[str] = []
    for name, args in stages(DOCKERFILE)[0]:
        if name == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    return sources


def test_the_build_context_holds_no_tests_and_not_the_local_stack() -> None:
    context = build_context()
    assert "operator/rotor/cli.py" in context and "pyproject.toml" in context
    leaked = [p for p in context if p.split("/")[0] in LEFT_OUT or "devenv" in p]
    assert leaked == [], f"the image's build context would include {leaked[:5]}"


def test_the_build_stage_copies_only_from_the_context() -> None:
    context = build_context()
    for source in copied_sources():
        assert source.split("/")[0] not in LEFT_OUT, f"COPY {source}"
        assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in context), (
            f"COPY {source}: not in the build context .dockerignore allows")


def test_the_package_never_imports_the_local_stack() -> None:
    for module in sorted((REPO / "operator" / "rotor").rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] != "tests" and "devenv" not in name, f"{module}: imports {name}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The files of the wheel the Dockerfile's `pip wheel` builds, run the same way on a copy of the
    build context (a checkout's stale build/ or egg-info cannot leak into it)."""
    context, out = tmp_path_factory.mktemp("context"), tmp_path_factory.mktemp("wheels")
    for rel in build_context():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, context / rel)
    found = re.search(r"pip (wheel [^&]*)", " ".join(a for n, a in instructions(DOCKERFILE) if n == "RUN"))
    assert found, "the build stage builds Rotor as a wheel with `pip wheel`"
    words = shlex.split(found.group(1))
    words[words.index("--wheel-dir") + 1] = str(out)
    built = subprocess.run([sys.executable, "-m", "pip", *words, "-q", "--disable-pip-version-check"],
                           cwd=context, capture_output=True, text=True, timeout=300)
    # The image build fetches its build backend from the package index as well: CI reaches it, so a
    # failure here is a failure (never a skip that would hide a wheel nobody checked).
    assert built.returncode == 0, built.stderr[-2000:]
    [path] = out.glob("rotor-*.whl")
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def test_the_wheel_ships_the_package_alone(wheel: list[str]) -> None:
    assert "rotor/cli.py" in wheel and "rotor/handlers/app.py" in wheel
    tops = {name.split("/")[0] for name in wheel}
    assert {t for t in tops if not fnmatch.fnmatch(t, "rotor-*.dist-info")} == {"rotor"}, tops
    assert [n for n in wheel if "devenv" in n or "/tests/" in n or n.startswith("tests/")] == []
