"""Where the tests find the upstream KubeVirt/CDI OpenAPI documents (read in place, never copied).

``$SMRUN_UPSTREAM`` wins and must exist when set (CI sets it: a missing directory then fails the
test instead of silently skipping it); otherwise ``../shared/upstream`` beside the repository, and
a developer without it gets a skip that says where it looked.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "upstream"


def upstream_dir() -> Path:
    configured = os.environ.get("SMRUN_UPSTREAM")
    path = Path(configured) if configured else DEFAULT
    if not (path / "kubevirt-swagger.json").is_file():
        if configured:
            pytest.fail(f"SMRUN_UPSTREAM={configured} has no kubevirt-swagger.json")
        pytest.skip(f"upstream OpenAPI documents not found at {path} (set SMRUN_UPSTREAM)")
    return path
