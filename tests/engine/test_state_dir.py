"""A state directory that cannot be used, and a disk that fills up mid-run (issue 13, item 4).

Every case ends with one line on stderr naming the path and the cause, exit 4 (``StateDirError``),
and no write request reached a cluster before the journal was known to be writable (the
simulator's request log). Running out of space mid-run is injected in the journal's file writer
(``journal._test_budget``, set in-process): the run stops where it is, every object
on the cluster has its intent in the journal, and the same command then resumes and finishes.
A real full or read-only tmpfs is used too when this machine lets the test mount one.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main
from statemachine.engine import journal as journal_module
from statemachine.engine.journal import PROBE_BYTES, read_entries
from statemachine.sim.cluster import SimulatedClusters

from .test_e2e import write_plan as e2e_plan

DATA = Path(__file__).resolve().parent.parent / "data" / "engine"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def write_plan(tmp: Path, sim: SimulatedClusters, names: list[str], name: str = "disk") -> Path:
    """The engine e2e tests' cold plan (tests/engine/itinerary.yaml), four VMs at a time."""
    return e2e_plan(tmp, sim, names, max_in_flight=4, name=name)


@pytest.fixture
def logged_sim(tmp_path: Path) -> Iterator[SimulatedClusters]:
    with SimulatedClusters(seed=DATA / "seed.yaml", tick=0.02, request_log=tmp_path / "requests.jsonl",
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        yield sim


def writes(sim: SimulatedClusters) -> list[dict[str, Any]]:
    assert sim.request_log_path is not None
    lines = sim.request_log_path.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["method"] in WRITES]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.fixture
def no_resync_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMRUN_CACHE_DIR", "off")


def test_a_state_dir_that_is_a_file_exits_4_before_any_request(
        logged_sim: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path, logged_sim, ["vm-1"])
    (tmp_path / "state").write_text("not a directory")
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 4
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "state") in line and "not a directory" in line
    assert writes(logged_sim) == []


def test_a_journal_path_that_is_a_directory_exits_4_before_any_request(
        logged_sim: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path, logged_sim, ["vm-1"])
    (tmp_path / "state" / "disk" / "journal.jsonl").mkdir(parents=True)
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 4
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "state" / "disk" / "journal.jsonl") in line and "is a directory" in line
    assert writes(logged_sim) == []
    # status reads the same journal: the same kind of answer, not a crash
    assert main(["status", str(plan), "--state-dir", str(tmp_path / "state")]) == 4
    assert "is a directory" in one_line(capsys.readouterr().err)


def test_a_full_disk_at_the_start_exits_4_before_any_request(
        logged_sim: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    plan = write_plan(tmp_path, logged_sim, ["vm-1"])
    monkeypatch.setattr(journal_module, "_test_budget", [100])  # less than the probe writes
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 4
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "state" / "disk") in line and "no space left on the device" in line
    assert writes(logged_sim) == []


def test_running_out_of_space_mid_run_stops_safely_and_the_same_command_resumes(
        logged_sim: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, no_resync_wait: None) -> None:
    names = [f"vm-{i}" for i in range(8)]
    plan = write_plan(tmp_path, logged_sim, names)
    state = tmp_path / "state"
    store = logged_sim.store("target")
    added: Counter[tuple[str, str]] = Counter()
    store.subscribe(lambda e: added.update([(e.obj["kind"], e.obj["metadata"]["name"])])
                    if e.type == "ADDED" and e.obj["kind"] in ("ConfigMap", "Job") else None)
    # The probe passes; then the disk fills after a few KB of journal: mid-run, after some creates.
    monkeypatch.setattr(journal_module, "_test_budget", [PROBE_BYTES + 6000])
    assert main(["run", str(plan), "--state-dir", str(state), "--output", "json",
                 "--resync", "0.3"]) == 4
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert str(state / "disk" / "journal.jsonl") in line and "no space left on the device" in line
    assert not any('"run_finished"' in out for out in captured.out.splitlines())
    entries = list(read_entries(state / "disk" / "journal.jsonl"))
    intents = {(e["ref"]["kind"], e["ref"]["name"]) for e in entries if e["type"] == "intent"}
    made = {(o["kind"], o["metadata"]["name"]) for kind in ("ConfigMap", "Job")
            for o in store.list(kind, "shop", label_selector="smrun.io/plan=disk")}
    assert made, "the disk filled before anything was created: the test proves nothing"
    assert made <= intents  # no object on the cluster without its intent in the journal
    assert len(made) < 3 * len(names)  # it stopped mid-run

    monkeypatch.setattr(journal_module, "_test_budget", [-1])  # room again
    assert main(["run", str(plan), "--state-dir", str(state), "--output", "json",
                 "--resync", "0.3"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "run_finished" and events[-1]["completed"] == len(names)
    assert set(added.values()) == {1} and len(added) == 3 * len(names)  # nothing created twice


def test_cutover_with_a_state_dir_that_is_a_file_exits_4(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    plan = Path(__file__).resolve().parents[2] / "examples" / "warm" / "plan.yaml"
    (tmp_path / "state").write_text("not a directory")
    assert main(["cutover", str(plan), "--at", "now", "--state-dir", str(tmp_path / "state")]) == 4
    line = one_line(capsys.readouterr().err)
    assert str(tmp_path / "state") in line and "not a directory" in line


def _tmpfs_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.parametrize("options,cause", [("ro", "read-only file system"),
                                           ("size=16k", "no space left on the device")])
def test_a_real_read_only_or_full_tmpfs_exits_4_with_one_line(
        logged_sim: SimulatedClusters, tmp_path: Path, options: str, cause: str) -> None:
    if not _tmpfs_available():
        pytest.skip("cannot mount a tmpfs here (needs unshare -m and mount privileges)")
    plan = write_plan(tmp_path, logged_sim, ["vm-1"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fill = "" if options == "ro" else f"mkdir -p {mnt}/state && head -c 12k /dev/zero > {mnt}/fill; "
    script = (f"mount -t tmpfs -o {options} tmpfs {mnt} && {fill}"
              f"exec {sys.executable} -m statemachine run {plan} --state-dir {mnt}/state")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "SMRUN_CACHE_DIR": "off"})
    assert proc.returncode == 4, proc.stderr
    line = one_line(proc.stderr)
    assert f"{mnt}/state" in line and cause in line
    assert writes(logged_sim) == []
