"""Fixtures and helpers for the live itinerary's tests.

- ``live_itinerary()``: ``itineraries/live.yaml`` loaded (schema and semantic checks).
- ``render_example(plan_path)``: every manifest the itinerary would apply for every VM of a
  simulated plan (``smrun render``'s code path, reads from the plan's seed), grouped by VM name.
- ``upstream_validator``: the upstream schemas the simulator ships (``tests/upstream.py``).
- ``plan_variant(tmp_path, seed_edit=..., plan_edit=...)``: a copy of the example plan whose seed
  (and plan) a test changed, with every path made absolute.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.plan import load_plan
from statemachine.render import RenderedManifest, render_plan
from statemachine.sim.offline import seed_reads
from upstream import shipped_validator

REPO = Path(__file__).resolve().parents[2]
LIVE_YAML = REPO / "itineraries" / "live.yaml"
EXAMPLE_DIR = REPO / "examples" / "live"
EXAMPLE_PLAN = EXAMPLE_DIR / "plan.yaml"
DATA = REPO / "tests" / "data" / "live"
RUN_ID = "20261126000000-abcdef"


def live_itinerary() -> Itinerary:
    return load_itinerary(LIVE_YAML)


def render_example(plan_path: Path = EXAMPLE_PLAN) -> dict[str | None, list[RenderedManifest]]:
    """``{vm name (None for setup): [RenderedManifest, ...]}`` in itinerary order."""
    plan = load_plan(plan_path)
    out: dict[str | None, list[RenderedManifest]] = {}
    for m in render_plan(plan, live_itinerary(), seed_reads(plan), run_id=RUN_ID):
        name = m.vm.split("/", 1)[1] if m.vm else None
        out.setdefault(name, []).append(m)
    return out


@pytest.fixture(scope="session")
def upstream_validator() -> Any:
    return shipped_validator()


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of ``kind`` and ``name`` in a seed list (AssertionError if absent)."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{kind} {name} not in the seed")


def plan_variant(tmp_path: Path, *, seed_edit: Callable[[dict[str, Any]], None] | None = None,
                 plan_edit: Callable[[dict[str, Any]], None] | None = None,
                 plan_path: Path = EXAMPLE_PLAN, name: str = "variant") -> Path:
    """A copy of ``plan_path`` (and its seed) changed by the callbacks; paths made absolute."""
    plan = load_yaml(plan_path)
    seed = copy.deepcopy(load_yaml((plan_path.parent / plan["spec"]["simulation"]["seed"]).resolve()))
    if seed_edit is not None:
        seed_edit(seed)
    seed_file = tmp_path / f"{name}-seed.yaml"
    seed_file.write_text(yaml.safe_dump(seed), encoding="utf-8")
    plan["spec"]["simulation"]["seed"] = str(seed_file)
    for hook in plan["spec"].get("hooks") or []:
        if hook.get("playbook"):
            hook["playbook"] = str((plan_path.parent / hook["playbook"]).resolve())
    if plan_edit is not None:
        plan_edit(plan)
    out = tmp_path / f"{name}-plan.yaml"
    out.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return out
