"""Locate the data shipped with smrun: built-in itineraries, templates, JSON Schemas and the examples.

This is the only module that knows where that data lives. In a wheel the four top-level folders
are mapped into the package (``statemachine/itineraries`` ...); in a source checkout or an editable
install they sit beside the package, so we fall back to ``<repo>/<kind>``. It does not read or
parse any file.
"""
from __future__ import annotations

from importlib import resources as _resources
from pathlib import Path
from typing import Literal

from statemachine.errors import DataNotFound

__all__ = ["DataNotFound", "Kind", "data_dir"]

Kind = Literal["itineraries", "templates", "schemas", "examples"]
# The examples ship too: `smrun operator manifests` derives the operator's ClusterRole from the
# built-in itineraries rendered on their example plans, and it must work from a wheel.


def data_dir(kind: Kind) -> Path:
    """Return the directory holding the packaged ``kind`` files."""
    packaged = Path(str(_resources.files("statemachine") / kind))
    if packaged.is_dir():
        return packaged
    # Editable installs and checkouts: the folders are at the repository root, next to the package.
    checkout = Path(__file__).resolve().parent.parent / kind
    if checkout.is_dir():
        return checkout
    raise DataNotFound(f"smrun data folder {kind!r} not found; reinstall smrun")
