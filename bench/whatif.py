"""Run ``smrun`` with a proposed optimisation applied in-process, to measure it before anyone
changes the code: ``python bench/whatif.py cyaml,readcache -- run PLAN --output json``.

``bench/run.py --whatif cyaml,readcache`` uses it for the smrun process. Each patch stands for a
small change proposed in docs/performance.md; none of them is part of smrun, and nothing here is
imported by smrun:

- ``cyaml``: parse YAML with libyaml (``yaml.CSafeLoader``) instead of the pure-Python loader:
  ``statemachine/render.py`` parses every rendered manifest with ``yaml.safe_load_all``.
- ``readcache``: memoize reads during one preflight pass (``engine/preflight.ClusterReads.get``):
  ``run_checks`` resolved every VM's reads twice (``render_vm`` and ``resolve_reads``) and
  re-read the cluster-scoped objects all VMs share (instancetype, preference, KubeVirt CR).
  Made in ``preflight.py`` itself by commit 62c641b; since then this patch changes nothing and
  is kept to measure older commits.
- ``nofsync``: no journal fsync before creates: measures what durability costs the reactions
  (not a proposal).
- ``steps``: not a change but a measurement: the loop thread's steps by the VM's state (count,
  CPU, wall), printed to stderr at exit.
- ``switch1ms``: a 1 ms GIL switch interval instead of 5 ms (``sys.setswitchinterval``), so the
  loop thread waits less for the GIL held by the I/O pool and the watch threads.
  ``smrun`` started as a process of its own (``cli.entry``) now does this itself; this patch is
  for runs through this script, which calls ``cli.main``.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _cyaml() -> None:
    import yaml

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def safe_load(stream: Any) -> Any:
        return yaml.load(stream, Loader=loader)

    def safe_load_all(stream: Any) -> Any:
        return yaml.load_all(stream, Loader=loader)

    yaml.safe_load = safe_load
    yaml.safe_load_all = safe_load_all


def _readcache() -> None:
    import importlib

    # ``statemachine.engine.preflight`` is also the name of a function in the package namespace.
    preflight: Any = importlib.import_module("statemachine.engine.preflight")

    original = preflight.ClusterReads.get

    def get(self: Any, cluster: str, api_version: str, kind: str, namespace: str,
            name: str) -> dict[str, Any] | None:
        memo: dict[tuple[str, ...], dict[str, Any] | None] = self.__dict__.setdefault(
            "_bench_memo", {})
        key = (cluster, api_version, kind, namespace or "", name)
        if key not in memo:
            memo[key] = original(self, cluster, api_version, kind, namespace, name)
        return memo[key]

    preflight.ClusterReads.get = get


def _switch1ms() -> None:
    # The loop thread shares the GIL with the I/O pool and the watch threads; a thread that wants
    # it waits up to the switch interval (5 ms by default) for the holder to let go.
    sys.setswitchinterval(0.001)


def _nofsync() -> None:
    # What the journal's fsync before each create (group commit, on the I/O pool) costs the
    # reaction to a wait whose next step is a create. Not a proposal: durability needs the fsync.
    from statemachine.engine import journal

    original = journal.Journal.__init__

    def init(self: Any, directory: Any, *, fsync: bool = True) -> None:
        original(self, directory, fsync=False)

    journal.Journal.__init__ = init  # type: ignore[method-assign]


def _steps() -> None:
    # Not an optimisation: a measurement. The loop thread's steps by the state the VM was in when
    # the step started: how many, their CPU (thread_time) and wall time, printed to stderr at
    # exit (bench/run.py keeps it in smrun.err under --workdir).
    import atexit
    import time

    from statemachine.engine import scheduler

    totals: dict[str, list[float]] = {}
    original = scheduler.Scheduler._step

    def step(self: Any, task: Any) -> None:
        model = getattr(getattr(task.gen, "gi_frame", None), "f_locals", {}).get("model")
        state = getattr(model, "state_name", None) or task.name
        cpu, wall = time.thread_time(), time.perf_counter()
        original(self, task)
        row = totals.setdefault(str(state), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += time.thread_time() - cpu
        row[2] += time.perf_counter() - wall

    def report() -> None:
        cpu = sum(r[1] for r in totals.values())
        print(f"steps: {sum(int(r[0]) for r in totals.values())} steps, {cpu:.3f} s CPU, "
              f"{sum(r[2] for r in totals.values()):.3f} s wall", file=sys.stderr)
        for state, (n, c, w) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
            print(f"steps: {state:32} {int(n):6d} {c * 1000:9.1f} ms CPU {w * 1000:9.1f} ms wall",
                  file=sys.stderr)

    scheduler.Scheduler._step = step  # type: ignore[method-assign]
    atexit.register(report)


PATCHES: dict[str, Callable[[], None]] = {"cyaml": _cyaml, "readcache": _readcache,
                                          "switch1ms": _switch1ms, "nofsync": _nofsync,
                                          "steps": _steps}


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print("usage: bench/whatif.py PATCH[,PATCH...] -- SMRUN-ARGS", file=sys.stderr)
        return 2
    names = [n for n in argv[0].split(",") if n] if argv[0] != "--" else []
    unknown = [n for n in names if n not in PATCHES]
    if unknown:
        print(f"bench/whatif.py: unknown patch {unknown[0]!r} (known: {', '.join(PATCHES)})",
              file=sys.stderr)
        return 2
    for name in names:
        PATCHES[name]()
    from statemachine.cli import main as smrun_main

    return smrun_main(argv[argv.index("--") + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
