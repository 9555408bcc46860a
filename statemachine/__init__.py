"""smrun: migrate KubeVirt virtual machines between clusters with declarative state machines.

This is the public facade: the names a library user needs, listed in ``__all__``. Everything
else (module layout, helpers, the ``transitions`` machine) is private and may change::

    from pathlib import Path
    from statemachine import Engine, Journal, connect, load_plan, plan_with_itinerary, preflight

    plan, itinerary = plan_with_itinerary(load_plan("plan.yaml"))   # the flow the plan selects
    cache = Path(".smrun/cache")     # discovery cache of the clients
    source = connect(name="source", context="east", cache_dir=cache)
    target = connect(name="target", context="west", cache_dir=cache)
    findings = preflight(plan, itinerary, source=source, target=target)  # applies nothing
    if not findings.blocking:
        journal = Journal.for_plan(Path(".smrun"), plan.name)
        engine = Engine(plan, itinerary, journal=journal, source=source, target=target)
        result = engine.run()        # RunResult; result.exit_code is 0 or 1

A plan with ``spec.simulation`` gets its clusters from ``SimulatedClusters(plan)`` (a context
manager whose ``source``/``target`` are ``Cluster`` objects), so it runs from Python without the
command line (docs/engine.md, "Library API", has a complete example that the tests run).

What is imported when: the error classes are imported with the package (they are small, and
``statemachine.cli`` needs them for every command). Every other name is resolved on first use by
the module ``__getattr__`` below (PEP 562), so ``import statemachine`` loads neither
``transitions`` nor ``kubernetes`` nor the YAML/JSON Schema/Jinja2 stack: ``smrun --help`` stays
fast and a build without the engine can still load and render plans. ``tests/test_public_api.py``
checks ``__all__``, that every name resolves, and what ``import statemachine`` loads.

Not to be confused with the PyPI package ``python-statemachine``, which installs an import
package of the same name; do not install both in one environment.
"""
from __future__ import annotations

# Private aliases: every public name of this module is in ``__all__`` (a test checks it).
import importlib as _importlib
import typing as _typing

from statemachine.errors import (
    Canceled,
    ClusterError,
    ClusterNotTrusted,
    ClusterUnreachable,
    Conflict,
    DataNotFound,
    DefinitionError,
    Forbidden,
    Gone,
    IllegalTransition,
    Invalid,
    JournalCorrupt,
    KindNotServed,
    LockHeld,
    NotFound,
    OwnershipConflict,
    PermanentClusterError,
    PreflightError,
    Problem,
    ReadinessFailed,
    ReadinessTimeout,
    RenderBudgetExceeded,
    SchemaError,
    SmrunError,
    StateDirError,
    TemplateError,
    TransientClusterError,
    UnknownProvider,
    UsageError,
)

if _typing.TYPE_CHECKING:  # the lazy names below, spelled out for type checkers and editors
    from statemachine.engine import Engine, EngineSettings, Journal, RunResult, VmResult
    from statemachine.engine.preflight import Findings
    from statemachine.itinerary import Itinerary, load_itinerary
    from statemachine.k8s import Cluster, ObjectRef
    from statemachine.k8s.client import connect
    from statemachine.library import preflight
    from statemachine.plan import Plan, load_plan
    from statemachine.providers import plan_with_itinerary
    from statemachine.simulated import SimulatedClusters

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    "load_plan": "statemachine.plan",
    "Plan": "statemachine.plan",
    "load_itinerary": "statemachine.itinerary",
    "Itinerary": "statemachine.itinerary",
    "plan_with_itinerary": "statemachine.providers",
    # The engine (the only importer of ``transitions``).
    "Engine": "statemachine.engine",
    "EngineSettings": "statemachine.engine",
    "Journal": "statemachine.engine",
    "RunResult": "statemachine.engine",
    "VmResult": "statemachine.engine",
    # The cluster seam, and the ``kubernetes``-backed implementation of it (which itself imports
    # ``kubernetes`` only when ``connect`` is called).
    "Cluster": "statemachine.k8s",
    "ObjectRef": "statemachine.k8s",
    "connect": "statemachine.k8s.client",
    # Checks before a run, and the simulated clusters of a plan's spec.simulation (the simulator
    # itself is imported when they start).
    "preflight": "statemachine.library",
    "Findings": "statemachine.engine.preflight",
    "SimulatedClusters": "statemachine.simulated",
}

__all__ = [
    "__version__",
    # loading definitions
    "Itinerary",
    "Plan",
    "load_itinerary",
    "load_plan",
    "plan_with_itinerary",
    # running them
    "Cluster",
    "Engine",
    "EngineSettings",
    "Journal",
    "ObjectRef",
    "RunResult",
    "VmResult",
    "connect",
    "Findings",
    "SimulatedClusters",
    "preflight",
    # the error tree (statemachine/errors.py)
    "Canceled",
    "ClusterError",
    "ClusterNotTrusted",
    "ClusterUnreachable",
    "Conflict",
    "DataNotFound",
    "DefinitionError",
    "Forbidden",
    "Gone",
    "IllegalTransition",
    "Invalid",
    "JournalCorrupt",
    "KindNotServed",
    "LockHeld",
    "NotFound",
    "OwnershipConflict",
    "PermanentClusterError",
    "PreflightError",
    "Problem",
    "ReadinessFailed",
    "ReadinessTimeout",
    "RenderBudgetExceeded",
    "SchemaError",
    "SmrunError",
    "StateDirError",
    "TemplateError",
    "TransientClusterError",
    "UnknownProvider",
    "UsageError",
]


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'statemachine' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    # Cache it: later lookups are plain module attributes, and this hook is not called again.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
