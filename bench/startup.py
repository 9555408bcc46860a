"""Start-up of smrun (issue 17 item 1): exec to the first API request, and ``validate --offline``.

    python bench/startup.py --rounds 7
    python bench/startup.py --rounds 7 --python A=/work/main/.venv/bin/python \\
                                       --python B=/work/wt/perf/.venv/bin/python   # A/B, interleaved

Two measures per round and per interpreter (each interpreter runs ``-m statemachine`` from the tree
it is installed from):

- ``offline``: wall seconds of ``smrun validate --offline examples/live/plan.yaml`` (exec to exit),
  and its CPU seconds (user + system, from ``RUSAGE_CHILDREN``): the CPU figure is the one to
  trust on a loaded machine.
- ``first_request``: ``smrun validate PLAN`` against fresh simulated clusters (bench/simserve.py,
  as bench/run.py starts them; the examples/live plan pointed at the served contexts). From the
  ``exec`` (a timestamp taken just before the child is started) to the arrival time of the first
  request in the simulator's request log. The simulator is started and ready before the clock
  starts, so its own start-up is not counted.
- ``floor``: the same measure for a five-line script that only imports the official ``kubernetes``
  client, loads the kubeconfig and sends ``GET /version`` (``_FLOOR``): what any Python tool on
  that client pays before its first request. smrun's ``first_request`` minus this is smrun's own
  start-up.

One untimed run of each first fills smrun's caches (``SMRUN_CACHE_DIR``: compiled templates,
schema verdicts), as any earlier command on the same plan would. The rounds alternate the
interpreters' order so neither always runs on a warmer machine; the
report is the median per interpreter and measure. Before timing, ``compileall`` writes the
bytecode of every interpreter's ``statemachine`` package (an installed smrun has it; an editable
tree run with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise compile every module from source on
every start, ~60-80 ms that no user of an installed smrun pays). ``--no-compile`` skips that.

Exit status 0 when every run exited 0, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

import compare  # noqa: E402  (bench/ is a folder of scripts, not a package)
import run as benchrun  # noqa: E402

EXAMPLE_PLAN = ROOT / "examples" / "live" / "plan.yaml"


_CWD = tempfile.gettempdir()
"""Children run from here, so ``-m statemachine`` is the interpreter's own install, not a tree in
the current folder."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # use (and keep) the bytecode compileall wrote
    return env


def _compile(python: str) -> None:
    where = subprocess.run([python, "-c", "import statemachine, os; "
                            "print(os.path.dirname(statemachine.__file__))"],
                           capture_output=True, text=True, check=True, env=_env(),
                           cwd=_CWD).stdout.strip()
    print(f"{python}: statemachine from {where}", file=sys.stderr)
    subprocess.run([python, "-m", "compileall", "-q", where], check=True, env=_env(), cwd=_CWD)


def _timed(cmd: list[str]) -> tuple[int, float, float, float]:
    """(exit code, exec time.time(), wall s, CPU s of the child) of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    exec_at = time.time()
    started = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False, env=_env(), cwd=_CWD).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return code, exec_at, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def offline(python: str) -> dict[str, Any]:
    code, _, wall, cpu = _timed([python, "-m", "statemachine", "validate", "--offline",
                                 str(EXAMPLE_PLAN)])
    return {"exit_code": code, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}


def _against_sim(workdir: Path, command: Callable[[Path, Path], list[str]]) -> dict[str, Any]:
    """Run ``command(plan, kubeconfig)`` against fresh simulated clusters serving the example
    plan's seed; its exit code, exec -> first request's arrival, wall and CPU seconds."""
    # The same folder every round: the plan (which names the kubeconfig's path) is the same
    # document each time, as when a user validates then runs one plan (the caches can hit).
    workdir.mkdir(parents=True, exist_ok=True)
    for old in ("requests.jsonl", "commits.jsonl"):
        (workdir / old).unlink(missing_ok=True)
    kubeconfig = workdir / "kubeconfig"
    seed, plan, _, _ = compare._example_plan(workdir, kubeconfig)
    sim = benchrun._start_sim(workdir, seed, kubeconfig, 0.05)
    try:
        code, exec_at, wall, cpu = _timed(command(plan, kubeconfig))
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait()
    arrivals = [json.loads(line)["ts"] for line in
                (workdir / "requests.jsonl").read_text(encoding="utf-8").splitlines() if line]
    first = min(arrivals) - exec_at if arrivals else None
    return {"exit_code": code, "first_request_s": round(first, 4) if first is not None else None,
            "wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "requests": len(arrivals)}


def first_request(python: str, workdir: Path) -> dict[str, Any]:
    """exec -> first request of ``smrun validate PLAN``."""
    return _against_sim(workdir, lambda plan, _: [python, "-m", "statemachine", "validate",
                                                  str(plan)])


_FLOOR = """\
import sys
from kubernetes import client, config
cfg = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], context="source", client_configuration=cfg)
client.VersionApi(client.ApiClient(cfg)).get_code()
"""
"""The least any Python tool built on the official client does before its first request: import
the library, load the kubeconfig, send ``GET /version``. smrun's own first request cannot come
sooner than this script's (smrun also parses its command line, loads and checks the plan)."""


def floor(python: str, workdir: Path) -> dict[str, Any]:
    """exec -> first request of :data:`_FLOOR`."""
    return _against_sim(workdir, lambda _, kubeconfig: [python, "-c", _FLOOR, str(kubeconfig)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--python", action="append", default=[], metavar="LABEL=PATH",
                   help="an interpreter to measure (repeatable; default: this one)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    pythons = [(label, os.path.abspath(path) if "/" in path else path)
               for label, path in (s.split("=", 1) for s in args.python)] \
        or [("this", sys.executable)]
    if not args.no_compile:
        for _, python in pythons:
            _compile(python)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in pythons}
    ok = True
    with tempfile.TemporaryDirectory(prefix="smrun-startup-") as tmp:
        for label, python in pythons:  # not timed: fills the caches, as any earlier command does
            offline(python)
            first_request(python, Path(tmp) / label)
        for r in range(args.rounds):
            order = pythons if r % 2 == 0 else list(reversed(pythons))
            for label, python in order:
                rec: dict[str, Any] = {"round": r, "offline": offline(python),
                                       "first": first_request(python, Path(tmp) / label),
                                       "floor": floor(python, Path(tmp) / f"{label}-floor")}
                ok = ok and all(rec[m]["exit_code"] == 0 for m in ("offline", "first", "floor"))
                results[label].append(rec)
    summary: dict[str, Any] = {"load_avg": os.getloadavg(), "rounds": args.rounds, "by": {}}
    for label, recs in results.items():
        med = {
            "offline_wall_s": statistics.median(x["offline"]["wall_s"] for x in recs),
            "offline_cpu_s": statistics.median(x["offline"]["cpu_s"] for x in recs),
            "first_request_s": statistics.median(x["first"]["first_request_s"] or 0 for x in recs),
            "validate_cpu_s": statistics.median(x["first"]["cpu_s"] for x in recs),
            "floor_first_request_s": statistics.median(x["floor"]["first_request_s"] or 0
                                                       for x in recs),
        }
        summary["by"][label] = {"median": med, "runs": recs}
        print(f"{label}: validate --offline wall {med['offline_wall_s']:.3f}s cpu "
              f"{med['offline_cpu_s']:.3f}s | exec->first request {med['first_request_s']:.3f}s "
              f"(validate cpu {med['validate_cpu_s']:.3f}s) | the client library's floor "
              f"{med['floor_first_request_s']:.3f}s  [median of {args.rounds}; "
              f"load {summary['load_avg'][0]:.1f}]")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
