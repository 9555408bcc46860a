"""Engine reaction latency and API requests per VM, against the simulated clusters.

    python bench/engine_latency.py [--vms 1 200] [--tick 0.05]

For each VM of tests/data/engine/itinerary.yaml the simulated Job controller writes the Job's
``Complete`` condition; the engine, woken by its watch, then creates the VM's ``-result``
ConfigMap. Both moments are taken from the simulator's store (commit times, in-process), so the
latency is "status write → the engine's next request committed" (it includes one API round trip).
Prints p50/p99 per run size and the client's requests per VM by verb. Not a test: numbers only.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from statemachine.engine import Engine, Journal
from statemachine.itinerary import load_itinerary
from statemachine.k8s.client import connect
from statemachine.sim.cluster import SimulatedClusters

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "engine"


class _Plan:
    def __init__(self, n: int) -> None:
        self.name = f"bench-{n}"
        self.vms = [type("VM", (), {"name": f"vm-{i}", "namespace": "shop"})() for i in range(n)]
        self.settings = type("S", (), {"max_in_flight": n, "step_timeout": 120.0})()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(n: int, tick: float) -> dict[str, Any]:
    done_at: dict[str, float] = {}
    result_at: dict[str, float] = {}
    lock = threading.Lock()

    def on_event(event: Any) -> None:
        obj, now = event.obj, time.perf_counter()
        name = obj["metadata"]["name"]
        with lock:
            if obj["kind"] == "Job" and name not in done_at and any(
                    c.get("type") == "Complete" and c.get("status") == "True"
                    for c in (obj.get("status") or {}).get("conditions") or []):
                done_at[name.removesuffix("-job")] = now
            elif obj["kind"] == "ConfigMap" and event.type == "ADDED" and name.endswith("-result"):
                result_at[name.removesuffix("-result")] = now

    with tempfile.TemporaryDirectory() as tmp, \
            SimulatedClusters(seed=DATA / "seed.yaml", tick=tick,
                              kubeconfig_out=Path(tmp) / "kubeconfig") as sim:
        sim.store("target").subscribe(on_event)
        src = connect(name="source", kubeconfig=sim.kubeconfig_path, context="source", cache_dir=Path(tmp))
        dst = connect(name="target", kubeconfig=sim.kubeconfig_path, context="target", cache_dir=Path(tmp))
        plan = _Plan(n)
        journal = Journal(Path(tmp) / "journal")
        started = time.perf_counter()
        # A plain object (not a loader Plan) means the engine's minimal context: enough here.
        from statemachine.engine import adapt
        from statemachine.engine.lang import DefaultLanguage
        itinerary = load_itinerary(DATA / "itinerary.yaml")
        engine = Engine(plan, adapt.flow_from_itinerary(itinerary), source=src, target=dst,
                        journal=journal, lang=DefaultLanguage(itinerary.template_dir))
        result = engine.run()
        wall = time.perf_counter() - started
        stats = dst.stats()
        src.close()
        dst.close()
        journal.close()
    lat = [result_at[k] - done_at[k] for k in result_at if k in done_at]
    return {"vms": n, "completed": result.count("Completed"), "wall_s": round(wall, 2),
            "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
            "p99_ms": round(1000 * _pct(lat, 0.99), 1) if lat else None,
            "requests_per_vm": {k: round(v / n, 2) for k, v in sorted(stats.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--tick", type=float, default=0.05)
    args = parser.parse_args()
    for n in args.vms:
        print(measure(n, args.tick))


if __name__ == "__main__":
    main()
