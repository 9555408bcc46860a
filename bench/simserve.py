"""``smrun sim serve`` with richer logs: the benchmark's simulator process.

    python bench/simserve.py --seed S --kubeconfig-out K --request-log R --commit-log C [--tick T]

It serves exactly what ``smrun sim serve`` serves (same ``SimulatedClusters``, same options), with
two logs the benchmark needs and the simulator's own request log lacks:

- ``--request-log``: the simulator's fields (``cluster``, ``method``, ``path``, ``user``,
  ``status``) plus ``ts`` = when the request *arrived* (the simulator logs when it ended, which
  for a watch is its close), ``end``, ``watch`` (true for a watch request) and ``name``: the
  ``metadata.name`` of a POST body (a create names its object only in the body).
- ``--commit-log``: one JSON line per committed store write: ``ts`` (Unix
seconds), ``cluster``, ``by`` (``controller`` when a simulated controller's thread made the write,
``api`` when an API request did), ``type`` (ADDED/MODIFIED/DELETED), ``kind``, ``ns``, ``name``,
``rv`` and ``s``: a digest of the status fields the live itinerary waits on (phase,
printableStatus, runStrategy, created, synchronization addresses present, migration completed or
failed). The request log alone cannot show *when a controller wrote the status a wait needs*,
which the reaction-latency measure is about.

Decision: this is a bench-only wrapper rather than a change to ``statemachine/sim`` (whose owner
was still committing). The commit log uses the public ``Store.subscribe`` hook; the callback runs
under the store lock, so it only formats a line into a buffered file (flushed at exit). The
request log wraps ``apiserver.Handler._handle``/``_read_body`` in this process only, to note the
arrival time, the watch flag and the POST body's name in a thread-local (each connection is
served by one thread, one request at a time), and replaces each server's ``request_log``. The
clean change in the simulator would be two more fields (``start``, ``watch``) in
``RequestLog.record``. Nothing here changes what the simulator answers.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from statemachine.errors import SmrunError
from statemachine.sim import apiserver
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import StoreEvent

_request = threading.local()  # per connection thread: arrival time, watch flag, POST name


def _install_request_hooks() -> None:
    handle, read_body = apiserver.Handler._handle, apiserver.Handler._read_body

    def _handle(self: apiserver.Handler, method: str) -> None:
        _request.start = time.time()
        query = self.path.partition("?")[2]
        _request.watch = "watch=true" in query or "watch=1" in query
        _request.name = ""
        handle(self, method)

    def _read_body(self: apiserver.Handler) -> bytes:
        raw: bytes = read_body(self)
        if raw[:1] == b"{":
            try:
                _request.name = (json.loads(raw).get("metadata") or {}).get("name") or ""
            except (ValueError, AttributeError):
                pass
        return raw

    apiserver.Handler._handle = _handle  # type: ignore[method-assign]
    apiserver.Handler._read_body = _read_body  # type: ignore[method-assign]


class RequestLog:
    """Stands in for the simulator's request log (same ``record`` signature, more fields)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._fh: IO[str] | None = path.open("w", encoding="utf-8", buffering=1 << 20)

    def record(self, *, cluster: str, method: str, path: str, user: str, status: int) -> None:
        now = time.time()
        line = json.dumps({"ts": round(getattr(_request, "start", now), 6), "end": round(now, 6),
                           "watch": bool(getattr(_request, "watch", False)),
                           "cluster": cluster, "method": method, "path": path,
                           "name": getattr(_request, "name", ""), "user": user,
                           "status": status})
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def digest(obj: dict[str, Any]) -> dict[str, Any]:
    """The status fields the live itinerary's waits read (small: the log stays ~200 B a line)."""
    status = obj.get("status") or {}
    out: dict[str, Any] = {}
    for key in ("phase", "printableStatus"):
        if key in status:
            out[key] = status[key]
    if "created" in status:
        out["created"] = bool(status["created"])
    if "ready" in status:
        out["ready"] = bool(status["ready"])
    run_strategy = (obj.get("spec") or {}).get("runStrategy")
    if run_strategy is not None:
        out["runStrategy"] = run_strategy
    if status.get("synchronizationAddresses"):
        out["sync"] = True
    state = status.get("migrationState") or {}
    if state.get("completed"):
        out["migrated"] = True
    if state.get("failed"):
        out["migrationFailed"] = True
    return out


class CommitLog:
    """Receives store events of both clusters and writes them as JSON lines."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._fh: IO[str] | None = path.open("w", encoding="utf-8", buffering=1 << 20)

    def callback(self, cluster: str) -> Any:
        def on_event(event: StoreEvent) -> None:
            meta = event.obj.get("metadata") or {}
            by = ("controller" if threading.current_thread().name.startswith("sim-controllers")
                  else "api")
            line = json.dumps({"ts": round(time.time(), 6), "cluster": cluster, "by": by,
                               "type": event.type, "kind": event.kind.kind,
                               "ns": meta.get("namespace", ""), "name": meta.get("name", ""),
                               "rv": event.resource_version, "s": digest(event.obj)})
            with self._lock:
                if self._fh is not None:
                    self._fh.write(line + "\n")
        return on_event

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/simserve.py", description=__doc__.splitlines()[0])
    p.add_argument("--seed", required=True)
    p.add_argument("--kubeconfig-out", required=True)
    p.add_argument("--request-log", required=True)
    p.add_argument("--commit-log", required=True)
    p.add_argument("--tick", type=float, default=0.05)
    args = p.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    commits, requests = CommitLog(Path(args.commit_log)), RequestLog(Path(args.request_log))
    _install_request_hooks()
    try:
        sim = SimulatedClusters(seed=args.seed, tick=args.tick,
                                kubeconfig_out=args.kubeconfig_out)
        sim.start()
    except SmrunError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return exc.exit_code
    # Installed after seeding and before the kubeconfig is announced (no client can have sent a
    # request yet): the seed's own commits are not controller work.
    for name in ("source", "target"):
        sim.store(name).subscribe(commits.callback(name))
        sim.servers[name].request_log = requests  # type: ignore[assignment]
    print(f"kubeconfig: {sim.kubeconfig_path}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        sim.stop()
        commits.close()
        requests.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
