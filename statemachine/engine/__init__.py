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

from statemachine.engine.core import Engine, EngineSettings, RunResult, VmResult
from statemachine.engine.journal import Journal

__all__ = ["Engine", "EngineSettings", "Journal", "RunResult", "VmResult"]
