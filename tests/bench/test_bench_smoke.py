"""Smoke test of the benchmark (bench/run.py --smoke): one live VM end to end, JSON emitted.

Asserts only that the run completes and that the JSON carries the measured fields with sane
values (no timing goals: those are for docs/performance.md, not for CI on a shared machine).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    # success) and the source VM halting: each one seen as a write followed by a reaction.
    assert run["reaction_ms"]["count"] >= 5
    assert run["requests_per_vm"]["POST"] >= 4 and run["requests_per_vm"]["DELETE"] >= 2
    assert run["watch_connections"] >= 1
    assert run["smrun"]["cpu_s"] > 0 and run["smrun"]["peak_rss_mb"] > 10
    assert run["sim"]["peak_rss_mb"] > 10
    assert (tmp_path / "work" / "n1" / "commits.jsonl").stat().st_size > 0
