"""The garbage collector's schedule in the ``smrun`` process: none during start-up, none at exit.

Start-up (imports, the plan, the itinerary, the cluster clients: ~60,000 objects that live as
long as the process) allocates without making cyclic garbage, so every collection it triggers
traverses objects that are all still in use: ~20 ms of the start of ``smrun run`` (issue 17). At
exit, the interpreter's final collections traverse the whole heap once more: ~45 ms between the
last journal write and the end of the process, for objects the operating system frees anyway.

So the process entry (:func:`statemachine.cli.entry`) calls :func:`pause` first and
:func:`at_exit` last; a command calls :func:`settle` when its start-up is over (``smrun run``
once the clusters are connected, before preflight; commands with no long start-up at once).
``settle`` freezes what exists then (``gc.freeze``: those objects are never traversed again, which
also makes each later collection cheaper) and turns collection back on. Objects that become
garbage are still freed by reference counting at any time; only cyclic garbage waits.

Code that calls ``statemachine.cli.main`` in-process (the tests, an embedder) never pauses
collection, and :func:`settle` is then a no-op. This module does not tune thresholds and is
not used by the engine.
"""
from __future__ import annotations

import gc

__all__ = ["at_exit", "pause", "settle"]

_paused = False


def pause() -> None:
    """Stop automatic collection for start-up (when it is on)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def settle() -> None:
    """Start-up is over: freeze the objects that exist now and collect automatically again."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def at_exit() -> None:
    """The process is about to end: keep its final collections from traversing the heap."""
    gc.freeze()
