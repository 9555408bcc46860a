"""Where smrun's disk caches live: one folder, resolved from the environment on every use.

Used by the compiled-template cache (:mod:`statemachine.codecache`, sub-folder ``jinja``) and the
verdict cache (:mod:`statemachine.verdictcache`, beside it). A module of its own so that finding
the folder imports nothing heavy: a plan whose schema verdict is cached is loaded before the
client library is imported and the first request sent, and importing Jinja2 there (~13 ms) only
to name a folder delayed that request (issue 17). It creates and checks no folder itself.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DISABLE", "cache_dir"]

DISABLE = ("", "off", "0", "no", "false")
"""Values of ``SMRUN_CACHE_DIR`` that turn the caches off."""


def cache_dir() -> Path | None:
    """The template-code cache's folder (``.../smrun/jinja``), or ``None`` when
    ``SMRUN_CACHE_DIR`` disables the caches."""
    configured = os.environ.get("SMRUN_CACHE_DIR")
    if configured is not None:
        if configured.strip().lower() in DISABLE:
            return None
        return Path(configured).expanduser() / "jinja"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "smrun" / "jinja"
