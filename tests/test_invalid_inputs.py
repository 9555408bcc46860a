"""Every invalid plan and itinerary in tests/data/invalid/ is refused by `smrun validate` with exit
code 2, one line per problem naming the file and the field, and no traceback.

Each case file says on its first line why it is invalid and what must be reported::

    # Invalid: <why>. expect: <file>[:<line>]: <field> | <file>:<line>: <field>

one ``expect`` entry per output line, in order; file names are relative to tests/data/invalid/
(template and seed problems name those files, under support/). Adding a case means adding a file.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import statemachine.commands as commands
from statemachine.cli import main

INVALID = Path(__file__).parent / "data" / "invalid"
CASES = sorted([*INVALID.glob("plans/*.yaml"), *INVALID.glob("itineraries/*.yaml")])


def expectations(case: Path) -> list[str]:
    first = case.read_text(encoding="utf-8").splitlines()[0]
    assert " expect: " in first, f"{case.name}: first line must say what to expect"
    return [e.strip() for e in first.split(" expect: ", 1)[1].split(" | ")]


def normalized(line: str) -> str:
    return line.replace(str(INVALID) + "/", "")


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert any(c.parent.name == "itineraries" for c in CASES) and any(c.parent.name == "plans" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_validate_refuses_with_one_line_per_problem(case: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    def no_cluster_checks(*_args: Any, **_kwargs: Any) -> int:
        raise AssertionError("an invalid input reached the cluster checks")

    monkeypatch.setattr(commands, "preflight", no_cluster_checks)
    code = main(["validate", str(case)])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert captured.out == ""
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    expected = expectations(case)
    assert len(lines) == len(expected), captured.err
    for line, want in zip(lines, expected):
        assert want in normalized(line), line
        assert len(normalized(line)) > len(want) + 2  # a message follows the location


@pytest.mark.parametrize("name", ["plans/bad-yaml.yaml", "plans/template-sandbox-escape.yaml",
                                  "itineraries/loop-without-exit.yaml"])
def test_the_installed_command_prints_no_traceback(name: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "statemachine", "validate", str(INVALID / name)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == len(expectations(INVALID / name))
