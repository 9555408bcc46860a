"""Throughput of the simulated API server: requests per second for create/get/patch, and watch
fan-out, at growing object counts (to show the per-request cost does not grow with them).

    python bench/sim_throughput.py [--sizes 1000 3000 10000] [--ops 500] [--watchers 10]

One keep-alive HTTPS connection (TLS, as kubectl and smrun use the simulator) from the same
process; no controllers. "create" adds ``--ops`` ConfigMaps, "get"/"patch" hit random existing
ones, "list 1" is a label-selected list returning one object. Fan-out: ``--watchers`` watches
(one thread and connection each) on ConfigMaps, then 1,000 merge patches; the time until every
watcher has seen every event. Not a test: numbers only (they move with machine load).
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from statemachine.sim.cluster import SimulatedClusters


class Conn:
    def __init__(self, sim: SimulatedClusters) -> None:
        parts = urlsplit(sim.url("source"))
        self.ctx = ssl.create_default_context(cafile=str(sim.ca_path))
        self.host, self.port = parts.hostname or "", parts.port
        self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx)
        self.headers = {"Authorization": f"Bearer {sim.token('source')}"}

    def call(self, method: str, path: str, body: Any = None,
             ctype: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={**self.headers, "Content-Type": ctype})
        resp = self.conn.getresponse()
        out = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {out[:200]!r}")
        return json.loads(out)


BASE = "/api/v1/namespaces/default/configmaps"


def rate(n: int, fn: Any) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def crud(sizes: list[int], ops: int) -> list[tuple[int, float, float, float, float]]:
    rows = []
    with SimulatedClusters(controllers=False) as sim:
        c = Conn(sim)
        count = 0
        for size in sizes:
            while count < size - ops:
                c.call("POST", BASE, {"metadata": {"name": f"fill-{count}",
                                                   "labels": {"n": str(count)}}})
                count += 1
            create = rate(ops, lambda i: c.call("POST", BASE, {"metadata": {
                "name": f"cm-{size}-{i}", "labels": {"n": f"x{size}-{i}"}}}))
            count += ops
            names = [f"cm-{size}-{i}" for i in range(ops)]
            get = rate(ops, lambda i: c.call("GET", f"{BASE}/{random.choice(names)}"))
            patch = rate(ops, lambda i: c.call(
                "PATCH", f"{BASE}/{random.choice(names)}", {"data": {"i": str(i)}},
                "application/merge-patch+json"))
            lst = rate(50, lambda i: c.call("GET", f"{BASE}?labelSelector=n%3Dx{size}-{i}"))
            rows.append((count, create, get, patch, lst))
    return rows


def fanout(watchers: int, events: int = 1000) -> float:
    with SimulatedClusters(controllers=False) as sim:
        c = Conn(sim)
        c.call("POST", BASE, {"metadata": {"name": "hot"}})
        rv = c.call("GET", BASE)["metadata"]["resourceVersion"]
        done = threading.Barrier(watchers + 1)
        ready = threading.Barrier(watchers + 1)

        def watcher() -> None:
            w = Conn(sim)
            w.conn.request("GET", f"{BASE}?watch=true&resourceVersion={rv}&timeoutSeconds=120",
                           headers=w.headers)
            resp = w.conn.getresponse()
            ready.wait()
            seen = 0
            while seen < events:
                line = resp.readline()
                if not line:
                    break
                seen += json.loads(line)["type"] == "MODIFIED"
            done.wait()
            w.conn.close()

        threads = [threading.Thread(target=watcher, daemon=True) for _ in range(watchers)]
        for t in threads:
            t.start()
        ready.wait()
        start = time.perf_counter()
        for i in range(events):
            c.call("PATCH", f"{BASE}/hot", {"data": {"i": str(i)}}, "application/merge-patch+json")
        done.wait()
        return events * watchers / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    p.add_argument("--ops", type=int, default=500)
    p.add_argument("--watchers", type=int, default=10)
    args = p.parse_args()
    print("| objects | create/s | get/s | merge-patch/s | selected list/s |")
    print("|---:|---:|---:|---:|---:|")
    for count, create, get, patch, lst in crud(args.sizes, args.ops):
        print(f"| {count} | {create:.0f} | {get:.0f} | {patch:.0f} | {lst:.0f} |")
    delivered = fanout(args.watchers)
    print(f"\nwatch fan-out: {args.watchers} watchers x 1000 patches: "
          f"{delivered:.0f} events delivered/s")


if __name__ == "__main__":
    main()
