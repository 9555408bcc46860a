"""The public facade ``statemachine/__init__.py``: ``__all__``, lazy names, import cost, identity.

``__all__`` must list exactly the public names (httpx's exported-members test), every name must
resolve to the object its defining module has, and ``import statemachine`` must stay cheap: the
engine (``transitions``) and the ``kubernetes`` client load only when a lazy name is used.
"""
from __future__ import annotations

import __future__
import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import types
from pathlib import Path

import pytest

import statemachine
from statemachine import errors

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("kubernetes", "transitions", "statemachine.engine", "statemachine.k8s.client")


def _loaded_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after running ``code`` (a clean slate per check)."""
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/",
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_all_lists_every_public_name_once() -> None:
    assert len(statemachine.__all__) == len(set(statemachine.__all__))
    # dir() lists the lazy names too, before their first use (the facade's __dir__).
    public = {name for name in dir(statemachine)
              if not name.startswith("_")
              and not isinstance(getattr(statemachine, name), types.ModuleType)  # imported submodules
              and not isinstance(getattr(statemachine, name), __future__._Feature)}  # `annotations`
    assert public == set(statemachine.__all__) - {"__version__"}


@pytest.mark.parametrize("name", statemachine.__all__)
def test_every_exported_name_resolves_to_the_defining_modules_object(name: str) -> None:
    value = getattr(statemachine, name)
    if name == "__version__":
        assert isinstance(value, str)
        return
    assert value.__module__.startswith("statemachine.")
    # The errors come with the package; every other name from the module the facade names.
    home = statemachine._LAZY.get(name, "statemachine.errors")
    assert getattr(importlib.import_module(home), name) is value


def test_the_facade_exports_every_error_class_and_problem() -> None:
    defined = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and obj.__module__ == errors.__name__}
    assert defined <= set(statemachine.__all__)
    assert {"SmrunError", "ClusterError", "SchemaError", "Problem"} <= defined


def test_the_library_entry_points_are_the_documented_ones() -> None:
    from statemachine.engine import Engine, Journal
    from statemachine.itinerary import load_itinerary
    from statemachine.k8s.client import connect
    from statemachine.plan import load_plan

    assert (statemachine.Engine, statemachine.Journal) == (Engine, Journal)
    assert (statemachine.load_plan, statemachine.load_itinerary) == (load_plan, load_itinerary)
    assert statemachine.connect is connect
    plan = statemachine.load_plan(ROOT / "examples" / "live" / "plan.yaml")
    assert isinstance(plan, statemachine.Plan) and plan.type == "live"
    itinerary = statemachine.load_itinerary(plan.itinerary or plan.type)
    assert isinstance(itinerary, statemachine.Itinerary) and itinerary.migration_type == "live"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'run_everything'"):
        statemachine.run_everything  # noqa: B018
    assert not hasattr(statemachine, "internal_helper")


def test_submodules_still_import_through_the_facade() -> None:
    # `from statemachine import <submodule>` must not be swallowed by the module __getattr__.
    from statemachine import expressions, readiness

    assert expressions.__name__ == "statemachine.expressions"
    assert readiness.__name__ == "statemachine.readiness"


def test_import_statemachine_loads_neither_kubernetes_nor_transitions() -> None:
    loaded = _loaded_after("import statemachine")
    assert "statemachine.errors" in loaded
    assert _heavy(loaded) == []
    # Nor the definition stack: `smrun --help` pays for none of it.
    assert not {"yaml", "jinja2", "jsonschema"} & loaded


def test_loading_a_plan_through_the_facade_does_not_load_the_engine_or_client() -> None:
    plan = ROOT / "examples" / "live" / "plan.yaml"
    loaded = _loaded_after(f"import statemachine\nstatemachine.load_plan({str(plan)!r})\n"
                           "statemachine.load_itinerary('live')")
    assert {"statemachine.plan", "statemachine.itinerary"} <= loaded
    assert _heavy(loaded) == []


def test_the_engine_names_load_transitions_but_not_kubernetes() -> None:
    loaded = _loaded_after("import statemachine\nstatemachine.Engine\nstatemachine.connect")
    assert "transitions" in loaded
    assert not [m for m in loaded if m == "kubernetes" or m.startswith("kubernetes.")]


def test_statemachine_is_this_project_not_python_statemachine() -> None:
    # PyPI's python-statemachine installs an import package of the same name.
    assert Path(statemachine.__file__).resolve() == ROOT / "statemachine" / "__init__.py"
    assert hasattr(statemachine, "SmrunError")


def test_the_version_is_the_distributions() -> None:
    assert statemachine.__version__ == importlib.metadata.version("smrun")
