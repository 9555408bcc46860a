"""smrun's execution engine: runs a plan's VMs through an itinerary over two clusters.

Library use (docs/engine.md)::

    from statemachine.engine import Engine, EngineSettings, Journal
    engine = Engine(plan, itinerary, source=src, target=dst, journal=Journal(path),
                    settings=EngineSettings(max_in_flight=20), on_event=print)
    result = engine.run()

Inside the package: ``core`` (Engine, EngineSettings), ``runner`` (one VM's flow), ``actions``,
``scheduler`` (the loop), ``journal``, ``runtime`` (the only ``transitions`` importer),
``preflight`` (the cluster checks), ``progress`` (event renderers). The command-line side that
connects, preflights, prints and reads files is :mod:`statemachine.commands`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.engine.core import Engine, EngineSettings, RunResult, VmResult
    from statemachine.engine.journal import Journal

__all__ = ["Engine", "EngineSettings", "Journal", "RunResult", "VmResult"]

# Decision (issue 17): the names above are loaded on first use, not when the package is. Importing
# a module of the package (``statemachine.engine.journal`` to lock a plan's journal) then costs
# that module only, not the whole engine with ``transitions``: ``smrun run`` locks the journal and
# starts connecting before it needs the engine.
_WHERE = {"Engine": "core", "EngineSettings": "core", "RunResult": "core", "VmResult": "core",
          "Journal": "journal"}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value
