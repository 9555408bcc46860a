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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statemachine.engine.journalbackend import BackendWrapper

if TYPE_CHECKING:
    from statemachine.engine.journalbackend import JournalBackend

logger = logging.getLogger("statemachine.operator")

#: ``on_outputs(vm, values)``: values a state of ``vm`` (``namespace/name``) recorded.
OnOutputs = Callable[[str, dict[str, Any]], None]


class OutputTap(BackendWrapper):
    """``backend`` with the outputs written to it reported to ``on_outputs``."""

    def __init__(self, backend: JournalBackend, on_outputs: OnOutputs) -> None:
        super().__init__(backend)
        self._on_outputs = on_outputs

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

