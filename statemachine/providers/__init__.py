"""Providers: who knows how to migrate VMs along a migration path (product.md §8).

A provider answers, for a path (= migration type: ``cold``, ``warm``, ``live``), whether it can
migrate along it and which itinerary does. That is all smrun asks: the pipeline, the predicates and
every state live in the itinerary's YAML (product.md §8). A provider may also install named
itineraries (``itineraries()``: name -> file; :mod:`statemachine.providers.catalog`), which a plan
selects with ``spec.itinerary: NAME``. Providers register through the entry-point group
``smrun.providers``; the built-in ``kubevirt`` provider is purely declarative and installs
``cold``, ``warm`` and ``live``.

This module only finds and asks providers. It does not run anything, and it does not talk to a
cluster.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from statemachine.errors import DefinitionError, UnknownProvider
from statemachine.providers.catalog import (InstalledItinerary, InstallsItineraries, find_itinerary,
                                            installed_itineraries)

if TYPE_CHECKING:
    from statemachine.itinerary import Itinerary
    from statemachine.plan import Plan

ENTRY_POINT_GROUP = "smrun.providers"
DEFAULT_PROVIDER = "kubevirt"

__all__ = ["DEFAULT_PROVIDER", "ENTRY_POINT_GROUP", "InstalledItinerary", "InstallsItineraries", "Provider",
           "UnknownProvider", "available_providers", "find_itinerary", "installed_itineraries",
           "itinerary_for_plan", "load_provider", "plan_with_itinerary"]


@runtime_checkable
class Provider(Protocol):
    """What smrun asks a provider. ``path`` is a migration type such as ``live``."""

    def supports_path(self, path: str) -> bool:
        """Whether this provider can migrate along ``path``."""
        ...

    def itinerary(self, path: str) -> Itinerary:
        """The itinerary that runs ``path`` (used when the plan names none)."""
        ...



# Tests replace entries here to register a provider without installing a distribution; real
# providers come from entry points. The registry is consulted first so a test provider can also
# shadow an installed one.
_registry: dict[str, Callable[[], Provider]] = {}


def _entry_point_factories() -> dict[str, Callable[[], Provider]]:
    found: dict[str, Callable[[], Provider]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.load)
    return found


def available_providers() -> list[str]:
    """Names of every registered provider (entry points and the in-process registry), sorted."""
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_registry)
    # The built-in provider is always there, even when the distribution metadata is missing
    # (running from a bare checkout without `pip install -e .`).
    names.add(DEFAULT_PROVIDER)
    return sorted(names)


def load_provider(name: str = DEFAULT_PROVIDER) -> Provider:
    """Instantiate the provider registered as ``name``.

    Raises ``UnknownProvider`` (exit code 2) if nothing registers that name, or if what is
    registered does not implement the ``Provider`` protocol.
    """
    factory = _registry.get(name)
    if factory is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
            factory = _load_entry_point(name, ep.load)
            break
    if factory is None and name == DEFAULT_PROVIDER:
        from statemachine.providers.kubevirt import KubevirtProvider
        factory = KubevirtProvider
    if factory is None:
        known = ", ".join(available_providers())
        raise UnknownProvider(f"unknown provider {name!r} (known: {known})")
    provider = factory()
    if not isinstance(provider, Provider):
        raise UnknownProvider(f"provider {name!r} does not implement the smrun provider interface")
    return provider


def _load_entry_point(name: str, load: Callable[[], Any]) -> Callable[[], Provider]:
    try:
        loaded = load()
    except Exception as exc:  # a broken third-party package must not show a traceback
        raise UnknownProvider(f"provider {name!r} could not be loaded: {exc}") from exc
    if not callable(loaded):
        raise UnknownProvider(f"provider {name!r} entry point is not callable")
    factory: Callable[[], Provider] = loaded
    return factory


def itinerary_for_plan(plan: Plan) -> Itinerary:
    """The itinerary a plan runs: ``spec.itinerary`` if given, else its provider's for ``spec.type``.

    A plan that names an itinerary and also writes a ``type`` that contradicts the itinerary's
    ``migrationType`` is refused (a ``type: live`` plan must not quietly run a restart flow).
    """
    from statemachine.itinerary import load_itinerary

    if plan.itinerary is not None:
        if isinstance(plan.itinerary, Path):
            itinerary = load_itinerary(plan.itinerary)
        else:
            # A name: what a provider installs (the built-ins are the kubevirt provider's).
            found = find_itinerary(plan.itinerary,
                                   where=plan.itinerary_at or f"{plan.path}: spec.itinerary")
            itinerary = load_itinerary(found.path)
        flow = itinerary.migration_type
        if plan.type_at is not None and flow is not None and plan.type != flow:
            raise DefinitionError(f"{plan.type_at}: {plan.type!r} does not match the itinerary's "
                                  f"migrationType {flow!r} ({itinerary.file}); write type: {flow} "
                                  f"or leave type out")
        return itinerary
    try:
        provider = load_provider(plan.provider)
    except UnknownProvider as exc:
        raise UnknownProvider(f"{plan.path}: spec.provider: {exc}") from None
    if not provider.supports_path(plan.type):
        where = plan.type_at or f"{plan.path}: spec.type"
        raise UnknownProvider(f"{where}: provider {plan.provider!r} does not support "
                              f"migration type {plan.type!r}")
    return provider.itinerary(plan.type)


def plan_with_itinerary(plan: Plan) -> tuple[Plan, Itinerary]:
    """The plan and the itinerary it runs; a plan that writes no ``type`` takes the itinerary's
    flow (its ``migrationType``, else its name), so ``plan.type`` in templates names what runs.
    The plan's ``spec.parameters`` are checked and completed with the itinerary's defaults."""
    from dataclasses import replace

    from statemachine.parameters import bind_parameters

    itinerary = itinerary_for_plan(plan)
    if plan.type_at is None and plan.itinerary is not None:
        plan = replace(plan, type=itinerary.migration_type or itinerary.name)
    return bind_parameters(plan, itinerary), itinerary


def builtin_itinerary_path(name: str) -> Path:
    """The file of the built-in itinerary ``name`` (``cold``, ``warm``, ``live``)."""
    from statemachine.resources import data_dir

    path = data_dir("itineraries") / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(builtin_itinerary_names())
        raise DefinitionError(f"no built-in itinerary {name!r} (known: {known})")
    return path


def builtin_itinerary_names() -> list[str]:
    """Names of the built-in itineraries, sorted."""
    from statemachine.resources import data_dir

    return sorted(p.stem for p in data_dir("itineraries").glob("*.yaml"))
