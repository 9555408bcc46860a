"""The request log of the simulated API server: one JSON object per line.

Fields: ``ts`` (Unix seconds, float: when the request arrived), ``end`` (when its answer was
sent; for a watch, when the watch ended), ``cluster``, ``method``, ``path`` (without the query),
``watch`` (a watch request, not a list or a get), ``name`` (the object's name for a create,
from the body's ``metadata.name``; ``""`` otherwise), ``user`` (``""`` when unauthenticated),
``status`` (the HTTP status; 0 for a dropped connection), ``dryRun`` (a write sent with
``?dryRun=All``: judged, never stored). Request bodies, queries and tokens are never logged. A
watch is logged when it ends.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO


class RequestLog:
    """Appends request records to a file; safe to share between threads and clusters."""

    def __init__(self, path: str | Path, *, line_buffered: bool = True) -> None:
        """``line_buffered=False`` writes in large blocks (a benchmark that must not slow the
        server down by a write per request); lines then appear when the log is closed."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self._line_buffered = line_buffered
        self._fh: IO[str] | None = self.path.open(
            "a", encoding="utf-8", buffering=-1 if line_buffered else 1 << 20)

    def record(self, *, cluster: str, method: str, path: str, user: str, status: int,
               start: float | None = None, watch: bool = False, name: str = "",
               dry_run: bool = False) -> None:
        now = time.time()
        line = json.dumps({"ts": round(start if start is not None else now, 6),
                           "end": round(now, 6), "cluster": cluster, "method": method,
                           "path": path, "watch": watch, "name": name, "user": user,
                           "status": status, "dryRun": dry_run})
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")
                if self._line_buffered:
                    self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
