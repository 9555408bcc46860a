"""Say what a YAML file looks like when it is not the kind of file a command expected.

An itinerary given as a plan used to be refused with a page of schema problems (every plan field
missing, every itinerary field unknown). :func:`expect` recognises smrun's own file kinds (plan,
itinerary, simulator seed) and a Kubernetes object by their shape, and refuses a file of another
kind with one line: what it looks like and what was expected. It decides nothing about a file
of the expected kind (the schema checks do that) and reads nothing itself.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine.errors import Problem, SchemaError

KINDS = {"Plan": "a plan (kind: Plan)", "Itinerary": "an itinerary (kind: Itinerary)",
         "ItineraryFragment": "an itinerary fragment (kind: ItineraryFragment)",
         "seed": "a simulator seed (source:/target: object lists)"}
NAMES = {"Plan": "a plan", "Itinerary": "an itinerary",
         "ItineraryFragment": "an itinerary fragment"}


def looks_like(data: Any) -> str | None:
    """``"Plan"``, ``"Itinerary"``, ``"seed"``, another ``kind`` value, or ``None`` (no idea)."""
    if not isinstance(data, Mapping):
        return None
    kind = data.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    if data and set(data) <= {"source", "target"} and \
            all(v is None or isinstance(v, list) for v in data.values()):
        return "seed"
    return None


def expect(data: Any, file: str, wanted: str, line: int | None = None) -> None:
    """Refuse ``data`` (the file ``file``) in one line when it looks like another kind of file
    than ``wanted`` (``"Plan"``, ``"Itinerary"`` or ``"ItineraryFragment"``); a file of no known shape passes on to the
    schema checks, which say what is missing."""
    found = looks_like(data)
    if found is None or found == wanted:
        return
    api_version = str(data.get("apiVersion", "")) if isinstance(data, Mapping) else ""
    if found not in KINDS and api_version.startswith("smrun.io/"):
        return  # one of ours with a misspelled kind: the schema names the field
    if found in KINDS:
        what = KINDS[found]
    elif isinstance(data, Mapping) and "apiVersion" in data:
        what = f"a Kubernetes object (kind: {found})"
    else:
        what = f"a file of kind {found!r}"
    message = f"this file looks like {what}, not {NAMES[wanted]}: kind {wanted!r} was expected"
    path = "" if found == "seed" else "kind"
    problem = Problem(file, path, message, line if path else None)
    raise SchemaError(str(problem), [problem])
