"""An unknown ``spec.itinerary`` name in a plan (issue 15 item 5): one line naming the plan file,
the line and the field, the closest installed name and the installed ones; exit 2, for ``run``
as for ``validate --offline``, with nothing applied and no traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from statemachine.cli import main
from tests.language.conftest import write_flow


def _plan(tmp_path: Path, name: str) -> tuple[Path, int]:
    plan = write_flow(tmp_path)
    text = plan.read_text().replace("  itinerary: ./flow.yaml\n", f"  itinerary: {name}\n")
    plan.write_text(text)
    return plan, text.splitlines().index(f"  itinerary: {name}") + 1


@pytest.mark.parametrize("command", [["validate", "--offline"], ["run"]])
def test_a_misspelt_name_says_where_and_suggests_the_installed_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    plan, line = _plan(tmp_path, "lvie")
    state = tmp_path / "state"
    extra = ["--state-dir", str(state)] if command == ["run"] else []
    assert main([*command, str(plan), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{plan}:{line}: spec.itinerary: unknown itinerary 'lvie' (did you mean 'live'? "
                   "installed: cold, live, warm)"]
    # Nothing journaled (so nothing applied): at most the run's lock file.
    assert [p.name for p in state.rglob("*") if p.is_file()] in ([], ["lock"])


def test_a_name_like_none_installed_lists_them(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan, line = _plan(tmp_path, "snapshot")
    assert main(["validate", "--offline", str(plan)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{plan}:{line}: spec.itinerary: unknown itinerary 'snapshot' (installed: cold, live, "
        "warm; a file needs a .yaml suffix)"]


def test_the_smrun_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    plan, line = _plan(tmp_path, "lvie")
    done = subprocess.run([sys.executable, "-m", "statemachine", "run", str(plan), "--state-dir",
                           str(tmp_path / "state")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"{plan}:{line}: spec.itinerary: unknown itinerary 'lvie' (did you mean 'live'? "
        "installed: cold, live, warm)"]
    assert "Traceback" not in done.stdout + done.stderr
