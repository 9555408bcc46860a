"""Itineraries and plans for the engine tests, built the way the product builds them.

``itinerary(tmp_path, STATES_YAML, templates)`` writes an itinerary file and its templates to a
temporary folder and loads it with :func:`statemachine.itinerary.load_itinerary`, so every engine
test also runs the loader, its schema and semantic checks, and then the production context,
label and predicate code. ``plan(name, vms)`` is a real :class:`statemachine.plan.Plan`.
``engine(...)`` composes an :class:`~statemachine.engine.Engine` over fake clusters.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from statemachine.engine import Engine, EngineSettings, Journal
from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.k8s import Cluster
from statemachine.plan import VM, Hook, Plan, Settings, VMHook

HEADER = """apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {{name: {name}, description: engine test flow}}
spec:
  migrationType: cold
  templates: templates
"""


def itinerary(folder: Path, spec: str, templates: Mapping[str, str] | None = None, *,
              name: str = "test") -> Itinerary:
    """Load an itinerary whose ``spec`` (after ``migrationType`` and ``templates``) is ``spec``,
    an indented YAML block such as ``states: [...]``, with ``templates`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    tdir = folder / "templates"
    tdir.mkdir(exist_ok=True)
    for fname, text in (templates or {}).items():
        (tdir / fname).write_text(text, encoding="utf-8")
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    path = folder / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + body + "\n", encoding="utf-8")
    return load_itinerary(path)


def vm(name: str, namespace: str = "shop", hooks: Iterable[str] = ()) -> VM:
    """A plan's VM, staying in its namespace under its name; ``hooks``: steps with a hook."""
    hook = Hook(name="h", image="quay.io/konveyor/hook-runner")
    return VM(name=name, namespace=namespace, target_name=name, target_namespace=namespace,
              hooks=tuple(VMHook(step, hook) for step in hooks))


def plan(name: str, vms: Iterable[VM | str], *, max_in_flight: int = 10,
         step_timeout: float = 1800.0) -> Plan:
    """A real plan (in-process clusters: no kubeconfig is read)."""
    return Plan(path=Path(f"{name}.yaml"), name=name, type="cold",
                vms=tuple(v if isinstance(v, VM) else vm(v) for v in vms),
                settings=Settings(max_in_flight=max_in_flight, step_timeout=step_timeout))


def engine(journal_root: Path, p: Plan, it: Itinerary, source: Cluster,
           target: Cluster | None = None, *, events: list[dict[str, Any]] | None = None,
           sinks: Iterable[Any] = (), journal: Journal | None = None, resync: float = 0.2,
           prefetched: Any = None, **settings: Any) -> Engine:
    """An engine over fake clusters with a fast resync; ``events`` collects every event."""
    on_event = [*([events.append] if events is not None else []), *sinks]
    return Engine(p, it, source=source, target=target or source,
                  journal=journal or Journal(journal_root / p.name),
                  settings=EngineSettings(resync=resync, **settings), on_event=on_event,
                  prefetched=prefetched)
