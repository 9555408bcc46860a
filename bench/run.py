"""Benchmark smrun end to end: orchestration overhead, reaction latency, API cost and scale.

    python bench/run.py --vms 1,10,100 --type live --max-in-flight 50 --json results.json
    python bench/run.py --smoke                      # N=1, asserts it completes and emits JSON
    python bench/run.py --vms 100 --profile prof.out # cProfile the smrun process
    python bench/run.py --vms 100 --whatif cyaml     # smrun with a proposed optimisation

For each N: generate a seed of N running VMs (bench/workload.py) and a live plan for them; start
the simulator (bench/simserve.py: ``smrun sim serve`` plus a commit log) as a subprocess; run
``smrun run PLAN --output json`` as a subprocess against the simulator's kubeconfig contexts; stop
the simulator; analyze the logs (bench/analyze.py). Per N it reports wall time, the ideal time and
their ratio, reaction latency p50/p99/max, API requests per VM by verb and watch connections,
and CPU seconds and peak RSS of the smrun process and of the simulator, separately (taken from
``os.wait4``'s rusage of each child: no psutil needed).

Only the live itinerary is supported (``--type live``): the wait conditions the analysis
recognises are the live itinerary's. Numbers move with machine load; docs/performance.md says
how to read them. Exit status: 0 when every run completed every VM, 1 otherwise, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import analyze  # noqa: E402  (bench/ is a folder of scripts, not a package)
import whatif  # noqa: E402
import workload  # noqa: E402


class BenchError(Exception):
    """A run could not be carried out (the simulator did not start, smrun crashed...)."""


def _rusage(pid: int) -> tuple[int, dict[str, float]]:
    """Reap ``pid``; its exit code, CPU seconds and peak RSS (MB) from the kernel's rusage."""
    _, status, ru = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), {
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "peak_rss_mb": round(ru.ru_maxrss / 1024.0, 1),  # Linux reports KiB
    }


def _start_sim(workdir: Path, seed: Path, kubeconfig: Path, tick: float) -> subprocess.Popen[str]:
    sim = subprocess.Popen(
        [sys.executable, str(BENCH / "simserve.py"), "--seed", str(seed),
         "--kubeconfig-out", str(kubeconfig), "--request-log", str(workdir / "requests.jsonl"),
         "--commit-log", str(workdir / "commits.jsonl"), "--tick", str(tick)],
        stdout=subprocess.PIPE, stderr=(workdir / "sim.err").open("w"), text=True)
    assert sim.stdout is not None
    line = sim.stdout.readline()  # blocks until the seed is loaded and both servers listen
    if not line.startswith("kubeconfig:"):
        sim.kill()
        sim.wait()
        err = (workdir / "sim.err").read_text(encoding="utf-8").strip().splitlines()
        raise BenchError(f"simulator did not start: {err[-1] if err else 'no output'}")
    return sim


def run_one(n: int, *, max_in_flight: int, tick: float, workdir: Path,
            profile: Path | None = None, whatif: str = "",
            pyspy: Path | None = None) -> dict[str, Any]:
    """One benchmark run with ``n`` VMs; the result record (see the module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    seed, plan, kubeconfig = workload.write(workdir, n, max_in_flight)
    sim = _start_sim(workdir, seed, kubeconfig, tick)
    try:
        cmd = [sys.executable]
        if pyspy is not None:  # sampled, every thread, only where a thread holds the GIL
            cmd = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                   "record", "-r", "500", "--threads", "--gil", "-f", "raw", "-o", str(pyspy),
                   "--", sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        cmd += [str(BENCH / "whatif.py"), whatif, "--"] if whatif else ["-m", "statemachine"]
        cmd += ["run", str(plan), "--output", "json", "--state-dir", str(workdir / "state")]
        exec_at = time.time()
        started = time.perf_counter()
        with (workdir / "smrun.out").open("w") as out, (workdir / "smrun.err").open("w") as err:
            # smrun as installed: with its bytecode (an exported PYTHONDONTWRITEBYTECODE would make
            # an editable tree compile every module from source on every start, ~60-80 ms).
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
            code, smrun_usage = _rusage(proc.pid)
            proc.returncode = code  # reaped by wait4: stop Popen from waiting again
        wall = time.perf_counter() - started
        exit_at = exec_at + wall
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim_code, sim_usage = _rusage(sim.pid)
            sim.returncode = sim_code
        except ChildProcessError:
            sim_usage = {"cpu_s": 0.0, "peak_rss_mb": 0.0}
    events = [json.loads(x) for x in (workdir / "smrun.out").read_text().splitlines()
              if x.startswith("{")]
    finished = next((e for e in events if e.get("event") == "run_finished"), None)
    if finished is None:
        tail = (workdir / "smrun.err").read_text().strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"N={n}: smrun exited {code} without run_finished: {tail[0]}")
    vms = [workload.vm_name(i) for i in range(n)]
    stats = analyze.summarize(workdir / "requests.jsonl", workdir / "commits.jsonl",
                              workdir / "smrun.out", vms, max_in_flight)
    # wall = start (exec -> first request) + span + tail (last request -> exit)
    stats["start_s"] = round(stats.pop("first_request_at") - exec_at, 3)
    stats["tail_s"] = round(exit_at - stats.pop("last_request_at"), 3)
    per_vm = {k: round(v / n, 4) for k, v in (("smrun_cpu_s", smrun_usage["cpu_s"]),
                                              ("sim_cpu_s", sim_usage["cpu_s"]))}
    return {
        "vms": n, "max_in_flight": max_in_flight, "tick_s": tick, "whatif": whatif,
        "exit_code": code,
        "completed": finished.get("completed", 0), "failed": finished.get("failed", 0),
        "wall_s": round(wall, 3),
        **stats,
        "overhead_ratio": round(wall / stats["ideal_s"], 3) if stats["ideal_s"] else None,
        "overhead_ratio_span": (round(stats["span_s"] / stats["ideal_s"], 3)
                                if stats["ideal_s"] else None),
        "smrun": smrun_usage, "sim": sim_usage, "cpu_per_vm": per_vm,
    }


def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg": [round(x, 2) for x in os.getloadavg()]}


def _print_row(r: dict[str, Any]) -> None:
    lat = r["reaction_ms"]
    print(f"N={r['vms']:>5}  wall {r['wall_s']:7.2f}s  span {r['span_s']:7.2f}s  "
          f"ideal {r['ideal_s']:7.2f}s  ratio {r['overhead_ratio']} (span {r['overhead_ratio_span']})"
          f"  reaction p50/p99/max {lat['p50']}/{lat['p99']}/{lat['max']} ms  "
          f"detection p50/p99 {r['detection_ms']['p50']}/{r['detection_ms']['p99']} ms  "
          f"start {r['start_s']}s  before first VM {r['before_first_vm_s']}s  "
          f"tail {r['tail_s']}s  "
          f"req/VM {r['requests_per_vm']}  watches {r['watch_connections']}  "
          f"smrun {r['smrun']['cpu_s']}s CPU {r['smrun']['peak_rss_mb']} MB  "
          f"sim {r['sim']['cpu_s']}s CPU {r['sim']['peak_rss_mb']} MB  "
          f"completed {r['completed']}/{r['vms']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--vms", default="1,10,100", help="comma-separated VM counts (default 1,10,100)")
    p.add_argument("--type", default="live", choices=["live"], help="migration type (live only)")
    p.add_argument("--max-in-flight", type=int, default=50, metavar="M")
    p.add_argument("--tick", type=float, default=0.05, help="simulator seconds per controller step")
    p.add_argument("--json", type=Path, metavar="FILE", help="write all results here")
    p.add_argument("--workdir", type=Path, help="keep seeds, plans and logs here (default: temp)")
    p.add_argument("--profile", type=Path, metavar="FILE",
                   help="cProfile the smrun process (of the last N) into FILE")
    p.add_argument("--py-spy", type=Path, metavar="FILE", dest="pyspy",
                   help="sample the smrun process (of the last N) with py-spy (a development tool, "
                        "not a dependency): raw stacks per thread, GIL holders only, into FILE")
    p.add_argument("--whatif", default="", metavar="PATCHES",
                   help="run smrun with proposed optimisations applied (bench/whatif.py: "
                        "cyaml, readcache; comma-separated)")
    p.add_argument("--smoke", action="store_true", help="N=1 only; fail unless it completes")
    args = p.parse_args(argv)
    try:
        sizes = [1] if args.smoke else [int(x) for x in args.vms.split(",") if x.strip()]
    except ValueError:
        print(f"bench/run.py: --vms: not a list of integers: {args.vms}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1 or args.max_in_flight < 1 or args.tick <= 0:
        print("bench/run.py: --vms, --max-in-flight and --tick must be positive", file=sys.stderr)
        return 2
    unknown = [n for n in args.whatif.split(",") if n and n not in whatif.PATCHES]
    if unknown:  # before anything starts, not as a failed smrun run
        print(f"bench/run.py: --whatif: unknown patch {unknown[0]!r} "
              f"(known: {', '.join(whatif.PATCHES)})", file=sys.stderr)
        return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="smrun-bench-"))
    results: dict[str, Any] = {"machine": machine(), "type": args.type, "runs": []}
    ok = True
    try:
        for i, n in enumerate(sizes):
            last = i == len(sizes) - 1
            prof = args.profile if last else None
            try:
                r = run_one(n, max_in_flight=args.max_in_flight, tick=args.tick,
                            workdir=root / f"n{n}", profile=prof, whatif=args.whatif,
                            pyspy=args.pyspy if last else None)
            except BenchError as exc:
                print(f"bench/run.py: {exc}", file=sys.stderr)
                ok = False
                continue
            results["runs"].append(r)
            _print_row(r)
            ok = ok and r["completed"] == n and r["exit_code"] == 0
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    else:
        print(json.dumps(results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
