"""Open flows (issue 15 item 1): an itinerary's ``migrationType`` and a plan's ``type`` are any DNS
label; a plan whose ``type`` contradicts its itinerary is refused with one line, exit 2."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.plan import load_plan
from statemachine.providers import plan_with_itinerary
from statemachine.render import render_plan
from statemachine.sim.offline import seed_reads
from tests.language.conftest import RESTART, write_flow


def test_a_custom_flow_validates_and_the_plan_takes_its_type(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path)
    assert main(["validate", "--offline", str(plan_path)]) == 0
    assert "plan 'flow' is valid" in capsys.readouterr().out
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    assert itinerary.migration_type == "restart" and plan.type == "restart"
    manifests = render_plan(plan, itinerary, seed_reads(plan))
    assert [m.manifest["data"] for m in manifests] == [{"flow": "restart"}]


def test_a_plan_type_that_matches_the_custom_flow_is_accepted(tmp_path: Path) -> None:
    plan_path = write_flow(tmp_path, plan_type="restart")
    assert main(["validate", "--offline", str(plan_path)]) == 0


def test_a_plan_type_that_contradicts_the_itinerary_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, plan_type="live")
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{plan_path}:5: spec.type: 'live' does not match the itinerary's migrationType 'restart'" in err[0]


def test_a_migration_type_that_is_not_a_dns_label_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, RESTART.replace("migrationType: restart", "migrationType: Re_Start"))
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flow.yaml:5" in err[0] and "migrationType" in err[0]


def test_migration_type_is_optional_and_the_flow_is_then_named_after_the_itinerary(tmp_path: Path) -> None:
    plan_path = write_flow(tmp_path, RESTART.replace("  migrationType: restart\n", ""))
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    assert itinerary.migration_type is None and plan.type == "restart"


def test_a_custom_type_without_an_itinerary_is_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, plan_type="restart")
    plan_path.write_text(plan_path.read_text().replace("  itinerary: ./flow.yaml\n", ""))
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spec.type" in err[0] and "'restart'" in err[0]
