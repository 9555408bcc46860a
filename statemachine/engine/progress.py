"""Progress renderers for the engine's events (product.md §5).

Events are dicts: ``ts``, ``event`` (``run_started``, ``vm_started``, ``state_entered``,
``state_waiting``, ``state_completed``, ``state_skipped``, ``retry``, ``undo``, ``vm_succeeded``, ``vm_failed``,
``vm_canceled``, ``run_finished``), ``plan``, ``vm`` (``namespace/name``; absent for run events,
``""`` for setup), ``state``, ``message`` and event-specific fields (``step``, ``waiting_for``,
``progress``, ``elapsed``, ``attempt``; counts on ``run_finished``). Three renderers:
:class:`JsonLines` (``--output json``), :class:`LiveTable` (a terminal) and :class:`PlainLines`.
They only write to their stream; they never raise into the engine.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from typing import IO, Any

#: A progress event (docs/engine.md), and what receives them.
Event = dict[str, Any]
EventSink = Callable[[Event], None]

_TERMINAL_EVENTS = {"vm_succeeded": "Completed", "vm_failed": "Failed", "vm_canceled": "Canceled"}


class JsonLines:
    """One JSON object per event and line. Events are kept as they come and turned into JSON
    when flushed: the engine flushes from its output thread (``flush_from_any_thread``), so the
    encoding (15-30 µs an event) is not done on the loop thread. The engine never changes an
    event after emitting it."""

    flush_from_any_thread = True

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._events: list[Event] = []
        self._lock = threading.Lock()  # flushes from two threads keep the events' order

    def __call__(self, event: Event) -> None:
        self._events.append(event)

    def flush(self, first: Callable[[], object] | None = None) -> None:
        """The engine calls this after each batch of steps: one write to the stream per batch
        rather than one per event (a write per event was 45-65 µs at 100 VMs). ``first`` runs
        after the events are taken and before they are written (the engine flushes the journal
        there, so an event is never seen before the journal entries that came before it)."""
        with self._lock:
            events, self._events = self._events, []
            try:
                if first is not None:
                    first()
            finally:  # a journal that failed still lets the events be seen
                if events:
                    self.stream.write("\n".join(json.dumps(e, default=str, sort_keys=False)
                                                for e in events) + "\n")
                self.stream.flush()


class PlainLines:
    """One line per meaningful change (no repeated waiting lines), for logs and pipes. Lines are
    written when flushed (the engine's output thread: ``flush_from_any_thread``)."""

    flush_from_any_thread = True

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, e: Event) -> None:
        kind = e["event"]
        who = e.get("vm") or ("setup" if "vm" in e else e.get("plan", ""))
        if kind == "run_started":
            line = f"plan {e['plan']}: run {e.get('run')} started ({e.get('vms')} VMs)"
        elif kind == "run_finished":
            line = f"plan {e['plan']}: finished: {e.get('message', '')}"
        elif kind == "state_entered":
            line = f"{who}: {e.get('state')}" + (f" [{e['step']}]" if e.get("step") else "")
        elif kind == "state_waiting":
            line = f"{who}: {e.get('state')}: {e.get('message', '')}" + \
                (f" ({e['progress']})" if e.get("progress") else "")
        elif kind == "state_skipped":
            line = f"{who}: {e.get('state')}: {e.get('message', '')}"
        elif kind == "undo":
            line = f"{who}: {e.get('message', '')}"
        elif kind == "retry":
            line = f"{who}: {e.get('state')}: retrying: {e.get('message', '')}"
        elif kind in _TERMINAL_EVENTS:
            line = f"{who}: {_TERMINAL_EVENTS[kind]}" + (f": {e['message']}" if e.get("message") else "")
        else:
            return
        self._lines.append(line + "\n")

    def flush(self, first: Callable[[], object] | None = None) -> None:
        """Write the lines so far (``first``: as :meth:`JsonLines.flush`)."""
        with self._lock:
            lines, self._lines = self._lines, []
            try:
                if first is not None:
                    first()
            finally:
                if lines:
                    self.stream.write("".join(lines))
                self.stream.flush()


class LiveTable:
    """A per-VM table redrawn in place (at most every ``interval`` seconds) on a terminal."""

    def __init__(self, stream: IO[str], *, interval: float = 0.25, max_rows: int = 40) -> None:
        self.stream = stream
        self.max_rows = max_rows
        self.interval = interval
        self.rows: dict[str, Event] = {}
        self.started: dict[str, float] = {}
        self._last = 0.0
        self._drawn = 0
        self.footer = ""

    def __call__(self, e: Event) -> None:
        vm = e.get("vm")
        if e["event"] == "state_skipped":
            return  # the table shows where a VM is; a skipped state is not a place
        if vm is not None:
            row = self.rows.setdefault(vm or "(setup)", {"state": "", "step": "", "waiting": ""})
            self.started.setdefault(vm or "(setup)", time.monotonic())
            if e.get("state"):
                row["state"] = e["state"]
            if e["event"] == "state_entered":
                row["step"], row["waiting"] = e.get("step", ""), ""
            elif e["event"] == "state_waiting":
                # Progress first: it is what an admin watches, and long object names truncate.
                what = e.get("waiting_for") or e.get("message", "")
                row["waiting"] = f"{e['progress']} · {what}" if e.get("progress") else what
            elif e["event"] in _TERMINAL_EVENTS:
                row["state"] = _TERMINAL_EVENTS[e["event"]]
                row["waiting"] = e.get("message", "")
                row["done"] = time.monotonic()
        if e["event"] == "run_finished":
            self.footer = f"finished: {e.get('message', '')}"
            self.draw(force=True)
        elif time.monotonic() - self._last >= self.interval:
            self.draw()

    def draw(self, *, force: bool = False) -> None:
        self._last = time.monotonic()
        now = time.monotonic()
        lines = [f"{'VM':32} {'STATE':26} {'STEP':16} {'ELAPSED':>8}  WAITING FOR / PROGRESS"]
        shown = list(self.rows.items())
        if len(shown) > self.max_rows:
            # Many VMs: the ones still running first, and a count of the rest.
            active = [r for r in shown if "done" not in r[1]]
            shown = (active + [r for r in shown if "done" in r[1]])[:self.max_rows]
        width = max(30, shutil.get_terminal_size((120, 24)).columns - 87)  # the last column's room
        for vm, row in shown:
            elapsed = int(row.get("done", now) - self.started[vm])
            lines.append(f"{vm[:32]:32} {row['state'][:26]:26} {row['step'][:16]:16} "
                         f"{elapsed // 60:>5}:{elapsed % 60:02}  {row['waiting'][:width]}")
        if len(self.rows) > len(shown):
            counts: dict[str, int] = {}
            for row in self.rows.values():
                counts[row["state"] if "done" in row else "running"] = \
                    counts.get(row["state"] if "done" in row else "running", 0) + 1
            lines.append(f"... {len(self.rows) - len(shown)} more; " +
                         ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        if self.footer:
            lines.append(self.footer)
        out = (f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "") + "\n".join(lines) + "\n"
        self._drawn = len(lines)
        self.stream.write(out)
        self.stream.flush()


def renderer_for(output: str, stream: IO[str]) -> EventSink:
    """``json`` → JSON lines; otherwise a live table on a terminal, plain lines elsewhere."""
    if output == "json":
        return JsonLines(stream)
    isatty = getattr(stream, "isatty", None)
    return LiveTable(stream) if isatty is not None and isatty() else PlainLines(stream)
