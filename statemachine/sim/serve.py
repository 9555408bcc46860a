"""``smrun sim serve``: run the two simulated clusters until SIGINT/SIGTERM.

Prints the kubeconfig path and both URLs, then serves. A bad seed file or option gives one line
on stderr naming the file and the problem, and exit status 2. ``argv`` excludes ``sim serve``.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from statemachine.errors import SmrunError
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.controller import DEFAULT_TICK
from statemachine.sim.store import DEFAULT_HISTORY


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smrun sim serve",
                                description="Serve the simulated source and target clusters.")
    p.add_argument("--seed", metavar="FILE", help="YAML {source: [objects], target: [objects]}")
    p.add_argument("--kubeconfig-out", metavar="FILE",
                   help="where to write the kubeconfig (default: a temporary file)")
    p.add_argument("--tick", type=float, default=DEFAULT_TICK, metavar="SECONDS",
                   help=f"time per simulated controller step (default {DEFAULT_TICK})")
    p.add_argument("--fault-rate", type=float, default=0.0, metavar="R",
                   help="fraction of non-watch requests answered with 500, 429 or a dropped "
                        "connection")
    p.add_argument("--request-log", metavar="FILE", help="append one JSON line per request")
    p.add_argument("--watch-history", type=int, default=DEFAULT_HISTORY, metavar="N",
                   help="watch events kept per kind; older resourceVersions get 410 Expired "
                        f"(default {DEFAULT_HISTORY})")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.tick <= 0:
        print(f"smrun sim serve: --tick must be positive, got {args.tick}", file=sys.stderr)
        return 2
    if not 0.0 <= args.fault_rate <= 1.0:
        print(f"smrun sim serve: --fault-rate must be between 0 and 1, got {args.fault_rate}",
              file=sys.stderr)
        return 2
    if args.watch_history < 1:
        print(f"smrun sim serve: --watch-history must be at least 1, got {args.watch_history}",
              file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        sim = SimulatedClusters(seed=args.seed, tick=args.tick,
                                fault_rate=args.fault_rate, request_log=args.request_log,
                                kubeconfig_out=args.kubeconfig_out, history=args.watch_history)
        sim.start()
    except SmrunError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return exc.exit_code
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"kubeconfig: {sim.kubeconfig_path}", flush=True)
        for name in ("source", "target"):
            print(f"{name}: {sim.url(name)}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sim.stop()
    return 0
