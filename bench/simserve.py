"""``smrun sim serve`` with richer logs: the benchmark's simulator process.

    python bench/simserve.py --seed S --kubeconfig-out K --request-log R --commit-log C [--tick T]

It serves exactly what ``smrun sim serve`` serves (same ``SimulatedClusters``, same options), with
two changes the benchmark needs:

- ``--request-log``: the simulator's own request log (arrival ``ts``, ``end``, ``watch``,
  ``name`` of a created object...: ``statemachine/sim/requestlog.py``), written in large blocks
  instead of a flush per request, so that logging does not slow the server it measures.
- ``--commit-log``: one JSON line per committed store write: ``ts`` (Unix seconds), ``cluster``,
  ``by`` (``controller`` when a simulated controller's thread made the write, ``api`` when an API
  request did), ``type`` (ADDED/MODIFIED/DELETED), ``kind``, ``ns``, ``name``, ``rv`` and ``s``:
  a digest of the status fields the live itinerary waits on (phase, printableStatus,
  runStrategy, created, ready, synchronization addresses present, migration completed or
  failed). The request log alone cannot show *when a controller wrote the status a wait needs*,
  which the reaction-latency measure is about. It uses the public ``Store.subscribe`` hook; the
  callback runs under the store lock, so it only formats a line into a buffered file (flushed
  at exit).

Nothing here changes what the simulator answers.
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
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.requestlog import RequestLog
from statemachine.sim.store import StoreEvent

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
    commits = CommitLog(Path(args.commit_log))
    requests = RequestLog(Path(args.request_log), line_buffered=False)
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
        sim.servers[name].request_log = requests
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
