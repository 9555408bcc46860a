"""Smoke test of the benchmark (bench/run.py --smoke): one live VM end to end, JSON emitted.

Asserts only that the run completes and that the JSON carries the measured fields with sane
values (no timing goals: those are for docs/performance.md, not for CI on a shared machine).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_completes_and_emits_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke",
                           "--json", str(out), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    (run,) = results["runs"]
    assert run["vms"] == 1 and run["completed"] == 1 and run["failed"] == 0
    assert 0 < run["ideal_s"] <= run["span_s"] <= run["wall_s"]
    # The live itinerary waits on the target DV, VMI, receiving migration (address, then
    # success) and the source VM halting; waits with no request between them count once (the
    # later one), so at least four reactions are seen whatever the timing.
    assert run["reaction_ms"]["count"] >= 4
    assert run["requests_per_vm"]["POST"] >= 4 and run["requests_per_vm"]["DELETE"] >= 2
    assert run["watch_connections"] >= 1
    assert run["smrun"]["cpu_s"] > 0 and run["smrun"]["peak_rss_mb"] > 10
    assert run["sim"]["peak_rss_mb"] > 10
    assert (tmp_path / "work" / "n1" / "commits.jsonl").stat().st_size > 0


def _analyze() -> object:
    sys.path.insert(0, str(ROOT / "bench"))
    import analyze  # noqa: PLC0415  (bench/ is a folder of scripts)
    return analyze


def test_reaction_and_ideal_from_synthetic_logs() -> None:
    analyze: Any = _analyze()
    vmim = "smrun-vm-00001-run1-receive"
    path = "/apis/kubevirt.io/v1/namespaces/bench/virtualmachineinstancemigrations"
    requests = [
        {"ts": 10.000, "method": "POST", "path": path, "name": vmim, "watch": False},
        {"ts": 10.050, "method": "GET", "path": f"{path}/{vmim}", "name": "", "watch": False},
        {"ts": 10.400, "method": "DELETE", "path": f"{path}/{vmim}", "name": "", "watch": False},
        {"ts": 10.000, "method": "GET", "path": path, "name": "", "watch": True},
    ]
    commit = {"cluster": "target", "kind": "VirtualMachineInstanceMigration", "ns": "bench",
              "name": vmim, "type": "MODIFIED"}
    commits = [
        {**commit, "ts": 10.100, "by": "controller", "s": {"phase": "Running"}},
        {**commit, "ts": 10.300, "by": "controller", "s": {"phase": "Succeeded"}},
        {**commit, "ts": 10.350, "by": "controller", "s": {"phase": "Succeeded"}},  # no-op again
        {**commit, "ts": 10.360, "by": "api", "s": {"phase": "Succeeded"}},
    ]
    (wait,) = analyze.waits(requests, commits)
    assert wait.vm == "vm-00001" and wait.condition == "WaitForStateTransfer"
    # Started by the POST (the last mutating request), satisfied by the first Succeeded write,
    # answered by the DELETE 100 ms later.
    assert (wait.start, wait.satisfied, wait.reaction) == (10.000, 10.300, 10.400)


def test_makespan_fills_slots_in_order() -> None:
    analyze: Any = _analyze()
    assert analyze.makespan([1.0, 1.0, 1.0], 2) == 2.0
    assert analyze.makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert analyze.makespan([], 5) == 0.0


def test_an_unknown_whatif_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--vms", "1", "--whatif", "bogus",
                           "--workdir", str(tmp_path / "w")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    sys.path.insert(0, str(ROOT / "bench"))
    import whatif  # noqa: PLC0415  (bench/ is a folder of scripts)
    known = ", ".join(whatif.PATCHES)
    assert "nofsync" in known  # the list is the patches bench/whatif.py defines, in its order
    assert done.stderr.strip().splitlines() == [
        f"bench/run.py: --whatif: unknown patch 'bogus' (known: {known})"]
    assert not (tmp_path / "w").exists()  # no simulator, no seed

def test_the_setups_last_wait_is_answered_by_the_first_vm() -> None:
    """The CA setup ends with a wait no setup request follows: the first VM's first request is
    the engine's reaction to it, so that wait counts in the ideal, not as smrun's overhead."""
    analyze: Any = _analyze()
    cms = "/api/v1/namespaces/kubevirt/configmaps"
    dvs = "/apis/cdi.kubevirt.io/v1beta1/namespaces/bench/datavolumes"
    requests = [
        {"ts": 1.000, "method": "PATCH", "path": f"{cms}/kubevirt-external-ca", "name": "",
         "watch": False, "cluster": "target"},
        {"ts": 1.030, "method": "PATCH", "path": f"{cms}/kubevirt-external-ca", "name": "",
         "watch": False, "cluster": "source"},
        {"ts": 1.090, "method": "POST", "path": dvs, "name": "vm-00000-root", "watch": False},
    ]
    ca = {"kind": "ConfigMap", "ns": "kubevirt", "name": "kubevirt-ca", "type": "MODIFIED",
          "by": "controller", "s": {}}
    commits = [{**ca, "cluster": "target", "ts": 1.020}, {**ca, "cluster": "source", "ts": 1.080}]
    found = [w for w in analyze.waits(requests, commits) if w.vm == analyze.SETUP]
    assert [(w.start, w.satisfied, w.reaction) for w in found] == [
        (1.000, 1.020, 1.030), (1.030, 1.080, 1.090)]
