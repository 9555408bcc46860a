"""The request log of the simulated API server: one JSON object per line.

Fields: ``ts`` (Unix seconds, float), ``cluster``, ``method``, ``path`` (without the query),
``user`` (``""`` when unauthenticated), ``status`` (the HTTP status; 0 for a dropped connection).
Request bodies and tokens are never logged. A watch is logged when it ends.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO


class RequestLog:
    """Appends request records to a file; safe to share between threads and clusters."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")

    def record(self, *, cluster: str, method: str, path: str, user: str, status: int) -> None:
        line = json.dumps({"ts": round(time.time(), 6), "cluster": cluster, "method": method,
                           "path": path, "user": user, "status": status})
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
