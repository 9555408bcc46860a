"""The shipped schema data is what ``scripts/gen_sim_schemas.py`` makes from the upstream OpenAPI
documents. Needs those documents (``$SMRUN_UPSTREAM`` or ``../shared/upstream``): skipped on a
fresh clone, which runs on the shipped data alone."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "statemachine" / "sim" / "data" / "crd-schemas.json.gz"


def _upstream() -> Path:
    path = Path(os.environ.get("SMRUN_UPSTREAM") or ROOT.parent / "shared" / "upstream")
    if not (path / "kubevirt-swagger.json").is_file():
        pytest.skip(f"no upstream OpenAPI documents at {path}")
    return path


def test_shipped_data_is_the_generated_data(tmp_path: Path) -> None:
    upstream = _upstream()
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_sim_schemas
    finally:
        sys.path.pop(0)
    fresh = gen_sim_schemas.generate(upstream)
    shipped = json.loads(gzip.decompress(DATA.read_bytes()))
    assert shipped == json.loads(json.dumps(fresh))


def test_the_script_refuses_a_folder_without_the_documents(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_sim_schemas.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "needs kubevirt-swagger.json" in proc.stderr
