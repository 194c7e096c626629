"""The CLI as a kubectl plugin (`kubectl rotor ...`) and the `status` subcommand's arguments."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rotor import cli
from rotor.api.kinds import KINDS

REPO = Path(__file__).resolve().parents[2]


def test_the_cli_installs_as_a_kubectl_plugin_too() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-rotor"] == scripts["rotor"] == "rotor.cli:main"


@pytest.mark.parametrize(("argv0", "prog"), [("/usr/local/bin/kubectl-rotor", "kubectl rotor"),
                                             ("/venv/bin/rotor", "rotor"), ("/x/rotor/__main__.py", "rotor")])
def test_help_names_the_command_as_the_user_typed_it(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], argv0: str, prog: str) -> None:
    monkeypatch.setattr("sys.argv", [argv0])
    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    assert capsys.readouterr().out.startswith(f"usage: {prog} status ")
    assert cli.main(["status", "no-slash"]) == 2
    assert capsys.readouterr().err == f"{prog} status: name the object as <namespace>/<name>\n"


def test_status_takes_each_of_rotors_kinds_and_text_or_json() -> None:
    for kind in KINDS:
        args = cli.parser().parse_args(["status", "--kind", kind.singular, "-o", "json", "team-a/db"])
        assert (args.kind, args.output, args.object) == (kind.singular, "json", "team-a/db")
    assert cli.parser().parse_args(["status", "team-a/db"]).output == "text"
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["status", "--kind", "secret", "team-a/db"])
