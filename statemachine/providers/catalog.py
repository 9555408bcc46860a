"""Itineraries that providers install, by name (``spec.itinerary: NAME``, ``smrun itineraries``).

A provider may install itineraries of its own (product.md §8): besides ``supports_path`` and
``itinerary``, it then has ``itineraries()``, a mapping of itinerary name to the itinerary's file.
The file is a normal itinerary; its ``spec.templates`` (relative to the file) finds the templates
the provider ships beside it, so a package only has to ship the folder. The built-in ``kubevirt``
provider installs ``cold``, ``warm`` and ``live`` this way.

A name two providers install is refused, naming both providers and both files: smrun never picks
one silently. The clash is an error where the name is used (a plan's ``spec.itinerary``, ``smrun
itineraries show NAME``), and for the whole listing (``smrun itineraries``), so it is seen there
first; other names keep working. Names are what ``spec.itinerary`` accepts as a name: no ``/`` and
no ``.yaml``/``.yml`` suffix (those are files).

This module finds and names files. It loads no itinerary and talks to no cluster.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from statemachine.errors import DefinitionError, UnknownProvider

__all__ = ["InstalledItinerary", "InstallsItineraries", "find_itinerary", "installed_itineraries"]


@runtime_checkable
class InstallsItineraries(Protocol):
    """A provider that installs named itineraries (optional, beside ``Provider``)."""

    def itineraries(self) -> Mapping[str, str | Path]:
        """Itinerary name -> the itinerary's file."""
        ...


@dataclass(frozen=True)
class InstalledItinerary:
    name: str
    provider: str
    path: Path


def _installed() -> dict[str, list[InstalledItinerary]]:
    """Every (name -> the providers' entries) pair, in provider order; refusals of a provider's
    own declarations (a bad name, a missing file) are raised naming that provider."""
    from statemachine.providers import available_providers, load_provider

    found: dict[str, list[InstalledItinerary]] = {}
    for provider_name in available_providers():
        provider = load_provider(provider_name)
        if not isinstance(provider, InstallsItineraries):
            continue
        try:
            offered = dict(provider.itineraries())
        except Exception as exc:  # a broken third-party package must not show a traceback
            raise UnknownProvider(f"provider {provider_name!r}: its itineraries could not be "
                                  f"listed: {exc}") from exc
        for name, file in offered.items():
            path = Path(file)
            if not isinstance(name, str) or not name or "/" in name or \
                    name.endswith((".yaml", ".yml")):
                raise UnknownProvider(f"provider {provider_name!r} installs an itinerary named "
                                      f"{name!r}: a name has no '/' and no .yaml suffix")
            if not path.is_file():
                raise UnknownProvider(f"provider {provider_name!r} installs itinerary {name!r} "
                                      f"as {path}, which is not a file")
            found.setdefault(name, []).append(InstalledItinerary(name, provider_name, path))
    return found


def _clash(entries: list[InstalledItinerary]) -> DefinitionError:
    who = " and ".join(f"{e.provider!r} ({e.path})" for e in entries)
    return DefinitionError(f"itinerary name {entries[0].name!r} is installed by more than one "
                           f"provider: {who}; uninstall one of them, or point spec.itinerary at "
                           "the file you mean")


def installed_itineraries() -> list[InstalledItinerary]:
    """Every installed itinerary, sorted by name; ``DefinitionError`` if two providers install
    the same name (the first such name, both providers named)."""
    found = _installed()
    for name in sorted(found):
        if len(found[name]) > 1:
            raise _clash(found[name])
    return [found[name][0] for name in sorted(found)]


def find_itinerary(name: str, *, where: str = "") -> InstalledItinerary:
    """The installed itinerary ``name``. ``DefinitionError`` when no provider installs it (the
    message lists the installed names) or when more than one does. ``where`` prefixes the
    message (``plan.yaml:4: spec.itinerary``)."""
    found = _installed()
    entries = found.get(name)
    prefix = f"{where}: " if where else ""
    if not entries:
        known = ", ".join(sorted(found)) or "none"
        close = difflib.get_close_matches(name, list(found), n=1)
        if close:
            raise DefinitionError(f"{prefix}unknown itinerary {name!r} (did you mean {close[0]!r}? "
                                  f"installed: {known})")
        raise DefinitionError(f"{prefix}unknown itinerary {name!r} (installed: {known}; a file "
                              "needs a .yaml suffix)")
    if len(entries) > 1:
        raise DefinitionError(f"{prefix}{_clash(entries)}")
    return entries[0]
