"""Smoke test of bench/peers: the kubectl + bash script migrates VMs as the live itinerary does.

One round at N=2 and one of the live example on fresh simulated clusters: both tools must
complete, and the script must leave the clusters as smrun does (checked by the script's own
``kubectl wait``s: target VM ready, source VM stopped). No timing goals here; the ratios are for
docs/performance.md.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


@pytest.mark.parametrize("args", [["--vms", "2"], ["--example"]], ids=["workload", "example"])
def test_kubectl_script_and_smrun_both_complete(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "peers.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "peers" / "compare.py"), *args,
                           "--rounds", "1", "--json", str(out), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["all_completed"]
    tools = {r["tool"]: r for r in result["runs"]}
    assert set(tools) == {"smrun", "kubectl"}
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in tools.values())
    script_out = next((tmp_path / "w").glob("n*/round0-kubectl/kubectl.out")).read_text()
    assert script_out.count(": Completed") == (3 if "--example" in args else 2)
    if "--example" not in args:
        assert tools["smrun"]["ideal_s"] > 0
