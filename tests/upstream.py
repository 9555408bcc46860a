"""Checks of rendered manifests against the upstream KubeVirt/CDI schemas the simulator ships.

The schemas come from ``statemachine/sim/data/crd-schemas.json.gz`` (generated from the upstream
OpenAPI documents by ``scripts/gen_sim_schemas.py``), so no test needs ``../shared`` at run time.

- ``shipped_validator()``: ``knows(kind)`` and ``problems(kind, obj)`` over those schemas, strict
  (an unknown field is a problem), the same data and code the simulated API server admits with.
- ``strict_problems(schema, value, path)``: the same check for one schema (``ObjectMeta``, a core
  type from the shipped data).
- ``validate_all`` checks rendered manifests and counts the ones it checked.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from statemachine.sim import admission
from statemachine.sim.kinds import Kind
from statemachine.sim.structural import Node


class ShippedSchemas:
    """``knows``/``problems`` over the shipped structural schemas (see the module doc)."""

    def knows(self, kind: Kind) -> bool:
        return admission.schema_of(kind) is not None

    def problems(self, kind: Kind, obj: dict[str, Any]) -> list[tuple[str, str]]:
        return admission.problems(kind, obj)


def shipped_validator() -> ShippedSchemas:
    return ShippedSchemas()


def strict_problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """``<field>: <message>`` for ``value`` against ``schema``, unknown fields included."""
    node = Node(schema)
    body = json.loads(json.dumps(value))
    unknown: list[str] = []
    node.prune(body, path, unknown)
    errors: list[tuple[str, str, str]] = []
    node.validate(body, path, errors)
    return [f"{p}: unknown field" for p in unknown] + [f"{f}: {m}" for _, f, m in errors]


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
