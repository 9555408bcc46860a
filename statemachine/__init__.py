"""smrun: migrate KubeVirt virtual machines between clusters with declarative state machines.

This is the public facade. It re-exports the names that library users need and nothing else;
everything not listed in ``__all__`` is private and may change.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
