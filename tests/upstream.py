"""Where the tests find the upstream KubeVirt/CDI OpenAPI documents (read in place, never copied).

``$SMRUN_UPSTREAM`` wins and must exist when set (CI sets it: a missing directory then fails the
test instead of silently skipping it); otherwise ``../shared/upstream`` beside the repository, and
a developer without it gets a skip that says where it looked.

``validate_all`` checks rendered manifests against those documents (through the simulator's
validator) and counts the ones it checked.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

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


CORE_GROUPS = ("v1", "batch/v1")  # not described by the upstream KubeVirt/CDI documents


def validate_all(manifests: Iterable[dict[str, Any]], registry: Any, validator: Any, *,
                 no_schema: Mapping[str, Callable[[dict[str, Any]], None]] | None = None,
                 core_groups: tuple[str, ...] = CORE_GROUPS) -> int:
    """Assert every KubeVirt/CDI manifest has no problem against the upstream schema; return how
    many were checked. A kind the upstream documents do not describe must be in ``no_schema``,
    whose check for it runs instead (and it is not counted). ``core_groups``: apiVersions the
    upstream documents do not cover at all (skipped)."""
    checked = 0
    for manifest in manifests:
        if manifest["apiVersion"] in core_groups:
            continue
        kind = registry.by_kind(manifest["apiVersion"], manifest["kind"])
        assert kind is not None, f"unknown kind {manifest['apiVersion']} {manifest['kind']}"
        if not validator.knows(kind):
            assert no_schema and manifest["kind"] in no_schema, \
                f"no upstream schema for {manifest['apiVersion']} {manifest['kind']}"
            no_schema[manifest["kind"]](manifest)
            continue
        problems = validator.problems(kind, manifest)
        assert problems == [], f"{manifest['kind']} {manifest['metadata']['name']}: {problems}"
        checked += 1
    return checked
