"""``smrun graph`` (issue 15 item 7): optional states dashed with skip edges around them, the
implicit Failed and Canceled ends with what undo does, the commit point, labels never cut."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.itinerary import load_itinerary


def _graph(name: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["graph", name]) == 0
    return capsys.readouterr().out.splitlines()


def test_optional_states_are_marked_with_skip_edges(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _graph("live", capsys)
    assert "    classDef optional stroke-dasharray:3 3" in lines
    for name in ("PreHook", "CreateServiceExports", "PostHook"):
        assert f"    class {name} optional" in lines
    assert "    class Started optional" not in lines
    assert "    Started --> CreateEmptyDataVolumes : skip" in lines
    assert "    Cleanup --> Completed : skip" in lines


def test_failed_canceled_undo_and_the_commit_point_are_drawn(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _graph("live", capsys)
    assert "    Failed --> [*]" in lines and "    Canceled --> [*]" in lines
    failed = next(line for line in lines if line.startswith("    Failed : "))
    assert "undo runs for the entered states that have one" in failed
    assert "CreateStandbyVM" in failed and "after CreateSourceMigration" in failed
    assert any(line.startswith("    note right of CreateSourceMigration : commit point") for line in lines)
    assert any(line.startswith("    CreateStandbyVM : ") and line.endswith("has undo") for line in lines)


def test_labels_are_not_cut(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _graph("live", capsys)
    live = load_itinerary("live")
    longest = max(live.states, key=lambda s: len(s.description))
    assert len(longest.description) > 200
    line = next(x for x in lines if x.startswith(f"    {longest.name} : "))
    tail = " ".join(longest.description.split()).replace(":", "\u2236").replace(";", ",")
    assert tail in line and "..." not in line
    assert not any(";" in x for x in lines)


def test_an_itinerary_without_undo_or_commit_says_so(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("apiVersion: smrun.io/v1alpha1\nkind: Itinerary\nmetadata: {name: tiny}\n"
                    "spec:\n  states:\n    - {name: Started}\n    - {name: Completed}\n")
    lines = _graph(str(path), capsys)
    assert any(x.startswith("    Failed : ") and "no state has undo" in x for x in lines)
    assert not any("commit point" in x for x in lines)
