"""Where a :class:`~statemachine.engine.journal.Journal`'s entries are kept: the backend seam.

The :class:`~statemachine.engine.journal.Journal` decides what is written and when it must be
durable (intents before creates, ``created`` at once, group commit); a backend only stores the
lines and makes them durable when asked. Two exist: the file of ``smrun run``
(:class:`~statemachine.engine.journal.FileBackend`) and the cluster's, ConfigMaps owned by the
Plan, for the operator (:mod:`statemachine.clusterjournal`). Both pass one conformance suite
(``tests/journal_conformance/``).

This module only states the contract; it stores nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class JournalBackend(Protocol):
    """Storage of one plan's journal lines. Every failure is a ``StateDirError`` (exit 4) naming
    ``where``; a second writer is ``LockHeld``. ``write``, ``flush`` and ``sync`` may be called
    from the engine's loop thread and its I/O pool at once."""

    #: What messages name: the journal file, or the cluster object.
    where: Path
    #: Whether a flush is already as durable as a sync (the cluster: acknowledged by the API
    #: server); then the journal never asks for a separate sync before a create.
    durable_flush: bool

    def lock(self) -> None:
        """Become the only writer, or raise ``LockHeld`` naming the one there is."""
        ...

    def unlock(self) -> None:
        """Stop being the writer (best effort: a lost lock is not an error)."""
        ...

    def probe(self) -> None:
        """Find a journal that cannot be written before anything is applied."""
        ...

    def reset(self) -> None:
        """Remove every entry (a fresh journal)."""
        ...

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every stored entry in order (a torn last write skipped; a corrupt one ``JournalCorrupt``)."""
        ...

    def write(self, data: bytes, *, flush: bool = False) -> None:
        """Buffer whole lines (``flush``: and flush them at once)."""
        ...

    def flush(self, *, wait: bool = True) -> bool:
        """Store what is buffered so that a kill -9 of this process cannot lose it; False when
        the backend was closed meanwhile (its close stored everything). ``wait=False``: it may
        be stored from another thread, soon; a failure is raised by the next call."""
        ...

    def sync(self) -> None:
        """Flush, then make it survive a machine crash."""
        ...

    def fence(self, error: Any) -> None:
        """From any thread: write nothing more (``error``, a ``StateDirError``, is why)."""
        ...

    def close(self, *, drop: bool) -> None:
        """Flush (unless ``drop``: after a failure the buffer is dropped) and let go."""
        ...


class BackendWrapper:
    """A backend that hands every call to ``backend``: the base of wrappers that watch what is
    written (the operator counts entries and reads outputs back) and override :meth:`write` only."""

    def __init__(self, backend: JournalBackend) -> None:
        self._backend = backend
        self.where: Path = backend.where
        self.durable_flush: bool = backend.durable_flush

    def write(self, data: bytes, *, flush: bool = False) -> None:
        self._backend.write(data, flush=flush)

    def lock(self) -> None:
        self._backend.lock()

    def unlock(self) -> None:
        self._backend.unlock()

    def probe(self) -> None:
        self._backend.probe()

    def reset(self) -> None:
        self._backend.reset()

    def entries(self) -> Iterator[dict[str, Any]]:
        return self._backend.entries()

    def flush(self, *, wait: bool = True) -> bool:
        return self._backend.flush(wait=wait)

    def sync(self) -> None:
        self._backend.sync()

    def fence(self, error: Any) -> None:
        self._backend.fence(error)

    def close(self, *, drop: bool) -> None:
        self._backend.close(drop=drop)
