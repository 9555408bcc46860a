"""``statemachine.cutover``: the override file ``smrun cutover PLAN --at TIME`` writes, and how a
VM's context picks it up (``with_override``, the engine hook the CLI wiring adds)."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from statemachine import cutover
from statemachine.errors import UsageError
from statemachine.plan import load_plan

from .harness import EXAMPLE_PLAN


def test_plan_wide_then_per_vm_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = load_plan(EXAMPLE_PLAN)
    said = cutover.set_cutover(plan, state_dir=tmp_path, at="2030-01-02T03:04:05+02:00")
    assert said.startswith("cutover of all VMs") and "set to 2030-01-02T01:04:05Z" in said
    assert capsys.readouterr().out == ""  # the library prints nothing; the CLI prints `said`
    assert "ledger/ledger-2" in cutover.set_cutover(plan, state_dir=tmp_path,
                                                    at="2030-01-02T00:00:00Z", vms=["ledger-2"])
    written = json.loads((tmp_path / "warm-demo" / "cutover.json").read_text())
    assert written == {"all": "2030-01-02T01:04:05Z", "vms": {"ledger/ledger-2": "2030-01-02T00:00:00Z"}}
    override = cutover.read_override(tmp_path / "warm-demo")
    assert override.for_vm("ledger/ledger-1", None) == "2030-01-02T01:04:05Z"
    assert override.for_vm("ledger/ledger-2", None) == "2030-01-02T00:00:00Z"
    # A new plan-wide time is the newest instruction: it replaces the per-VM ones.
    cutover.set_cutover(plan, state_dir=tmp_path, at="2031-01-01T00:00:00Z")
    assert cutover.read_override(tmp_path / "warm-demo").for_vm("ledger/ledger-2", None) \
        == "2031-01-01T00:00:00Z"


def test_now_is_written_as_utc_seconds() -> None:
    moment = datetime(2030, 5, 6, 7, 8, 9, 500000, tzinfo=timezone.utc)
    assert cutover.normalize_time("now", now=moment) == "2030-05-06T07:08:09Z"
    assert cutover.normalize_time("2030-05-06T09:08:09.25+02:00") == "2030-05-06T07:08:09Z"


@pytest.mark.parametrize("text, message", [
    ("tomorrow", "not an RFC 3339 time"),
    ("2030-05-06T07:08:09", "give a time zone"),
])
def test_bad_times_are_one_clear_line(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        cutover.set_cutover(load_plan(EXAMPLE_PLAN), state_dir=tmp_path, at=text)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "warm-demo" / "cutover.json").exists()


def test_unknown_vm_and_non_warm_plan_are_refused(tmp_path: Path) -> None:
    plan = load_plan(EXAMPLE_PLAN)
    with pytest.raises(UsageError, match="VM 'nope' is not in plan warm-demo"):
        cutover.set_cutover(plan, state_dir=tmp_path, at="now", vms=["nope"])
    cold = load_plan(EXAMPLE_PLAN.parents[1] / "cold" / "plan.yaml")
    with pytest.raises(UsageError, match="cold migration: only warm migrations have a cutover"):
        cutover.set_cutover(cold, state_dir=tmp_path, at="now")


def test_context_hook_reads_changes_and_keeps_the_plan_value_otherwise(tmp_path: Path) -> None:
    directory = tmp_path / "warm-demo"
    ctx = {"vm": {"name": "ledger-1", "cutover": "2040-01-01T00:00:00Z"}, "outputs": {}}
    assert cutover.with_override(dict(ctx), directory, "ledger/ledger-1") == ctx
    plan = load_plan(EXAMPLE_PLAN)
    cutover.set_cutover(plan, state_dir=tmp_path, at="2030-01-01T00:00:00Z", vms=["ledger-1"])
    changed = cutover.with_override(dict(ctx), directory, "ledger/ledger-1")
    assert changed["vm"]["cutover"] == "2030-01-01T00:00:00Z"
    assert ctx["vm"]["cutover"] == "2040-01-01T00:00:00Z"  # the base context is not mutated
    # Another write is seen (mtime changes), and ledger-2 keeps the plan's value.
    path = directory / "cutover.json"
    cutover.set_cutover(plan, state_dir=tmp_path, at="2030-06-01T00:00:00Z", vms=["ledger-1"])
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9, path.stat().st_mtime_ns + 10**9))
    assert cutover.cutover_for(directory, "ledger/ledger-1", None) == "2030-06-01T00:00:00Z"
    assert cutover.cutover_for(directory, "ledger/ledger-2", "2040-01-01T00:00:00Z") \
        == "2040-01-01T00:00:00Z"


def test_unreadable_file_keeps_the_last_good_value(tmp_path: Path) -> None:
    directory = tmp_path / "warm-demo"
    cutover.set_cutover(load_plan(EXAMPLE_PLAN), state_dir=tmp_path, at="2030-01-01T00:00:00Z")
    assert cutover.cutover_for(directory, "ledger/ledger-1", None) == "2030-01-01T00:00:00Z"
    path = directory / "cutover.json"
    path.write_text("{not json")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9, path.stat().st_mtime_ns + 10**9))
    assert cutover.cutover_for(directory, "ledger/ledger-1", None) == "2030-01-01T00:00:00Z"
    with pytest.raises(UsageError, match="unreadable cutover override"):
        cutover.read_override(directory)
