"""Providers: the built-in declarative kubevirt provider and the loader's deference to others."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import statemachine.providers as providers
from statemachine.errors import DefinitionError
from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.plan import load_plan
from statemachine.providers import (Provider, UnknownProvider, available_providers, itinerary_for_plan,
                                    load_provider)
from statemachine.providers.kubevirt import KubevirtProvider

DATA = Path(__file__).parent / "data" / "plans"
CUSTOM = DATA / "render" / "itinerary.yaml"


class ToyProvider:
    """A provider with one path, ``toy``, served by the render tests' itinerary."""

    calls: list[str] = []

    def supports_path(self, path: str) -> bool:
        return path in ("toy", "live")

    def itinerary(self, path: str) -> Itinerary:
        ToyProvider.calls.append(path)
        return load_itinerary(CUSTOM)


@pytest.fixture()
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(providers._registry, "toy", ToyProvider)
    ToyProvider.calls = []
    yield


def test_the_kubevirt_provider_is_registered_by_entry_point_and_loads() -> None:
    provider = load_provider("kubevirt")
    assert isinstance(provider, KubevirtProvider)
    assert isinstance(provider, Provider)
    assert "kubevirt" in available_providers()


def test_the_kubevirt_provider_serves_the_builtin_paths_declaratively() -> None:
    provider = load_provider()
    for path in ("cold", "warm", "live"):
        assert provider.supports_path(path)
        assert provider.itinerary(path).migration_type == path
    assert not provider.supports_path("teleport")


def test_the_provider_protocol_is_only_what_smrun_calls() -> None:
    # supports_path and itinerary: everything else (pipeline, predicates, states) is in the YAML.
    assert {n for n in vars(Provider) if not n.startswith("_")} == {"supports_path", "itinerary"}


def test_a_plan_without_itinerary_runs_its_providers_itinerary_for_its_type() -> None:
    plan = load_plan(DATA / "valid" / "sim-live.yaml")
    assert itinerary_for_plan(plan).name == "live"


def test_a_plan_itinerary_overrides_the_provider(toy_registered: None) -> None:
    # type_at=None: the plan writes no type (a written one must match the itinerary, issue 15)
    plan = replace(load_plan(DATA / "valid" / "sim-live.yaml"), itinerary=CUSTOM, provider="toy",
                   type_at=None)
    assert itinerary_for_plan(plan).name == "tiny"
    assert ToyProvider.calls == []
    builtin = replace(plan, itinerary="cold")
    assert itinerary_for_plan(builtin).name == "cold"


def test_the_loader_defers_to_a_registered_provider(toy_registered: None) -> None:
    provider = load_provider("toy")
    assert isinstance(provider, ToyProvider)
    plan = replace(load_plan(DATA / "valid" / "sim-live.yaml"), provider="toy")
    assert itinerary_for_plan(plan).name == "tiny"
    assert ToyProvider.calls == ["live"]


def test_providers_are_found_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = EntryPoint(name="toy", value=f"{__name__}:ToyProvider", group=providers.ENTRY_POINT_GROUP)
    real = providers.entry_points

    def fake_entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == providers.ENTRY_POINT_GROUP and kwargs.get("name") in (None, "toy"):
            found = [e for e in real(group=providers.ENTRY_POINT_GROUP) if kwargs.get("name") is None]
            return [*found, fake]
        return real(**kwargs)

    monkeypatch.setattr(providers, "entry_points", fake_entry_points)
    assert "toy" in available_providers()
    assert isinstance(load_provider("toy"), ToyProvider)


def test_an_unknown_provider_is_a_definition_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownProvider, match=r"unknown provider 'nope' \(known: .*kubevirt"):
        load_provider("nope")
    assert issubclass(UnknownProvider, DefinitionError)


def test_a_provider_that_does_not_support_the_type_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(providers._registry, "toy", ToyProvider)
    plan = replace(load_plan(DATA / "valid" / "clusters.yaml"), provider="toy")  # warm
    with pytest.raises(UnknownProvider, match=r"clusters.yaml:5: spec.warm: provider 'toy' does not support migration type 'warm'"):
        itinerary_for_plan(plan)


def test_something_that_is_not_a_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(providers._registry, "broken", object)
    with pytest.raises(UnknownProvider, match="does not implement"):
        load_provider("broken")
