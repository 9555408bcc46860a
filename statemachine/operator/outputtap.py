"""The journal backend of a Plan's run, with each ``outputs`` entry handed to its reporter.

A Plan object's status carries what ``smrun status --output json`` shows for a plan file, the
VMs' outputs among them (the connect URL of a live migration, a warm migration's rounds). The
engine records outputs in its journal only (an ``outputs`` entry per state that has them; a
VM's start begins a fresh set), not in its progress events; this wrapper passes every write
through unchanged and reads the outputs back from the lines written, so neither the engine nor
the journal knows about the status. Only lines that mention ``"outputs"`` are parsed.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.engine.journalbackend import JournalBackend

logger = logging.getLogger("statemachine.operator")

#: ``on_outputs(vm, values)``: values a state of ``vm`` (``namespace/name``) recorded.
OnOutputs = Callable[[str, dict[str, Any]], None]


class OutputTap:
    """``backend`` with the outputs written to it reported to ``on_outputs``."""

    def __init__(self, backend: JournalBackend, on_outputs: OnOutputs) -> None:
        self._backend = backend
        self._on_outputs = on_outputs
        self.where: Path = backend.where
        self.durable_flush: bool = backend.durable_flush

    def write(self, data: bytes, *, flush: bool = False) -> None:
        self._backend.write(data, flush=flush)
        if b'"outputs"' not in data:
            return
        for line in data.splitlines():
            if b'"outputs"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:  # not ours to judge: the journal reads its own lines
                continue
            if isinstance(entry, dict) and entry.get("type") == "outputs" and entry.get("vm"):
                self._on_outputs(str(entry["vm"]), dict(entry.get("values") or {}))

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
