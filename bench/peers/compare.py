"""smrun against a kubectl + bash script doing the same live migration, on fresh simulated clusters.

    python bench/peers/compare.py --vms 3,20 --rounds 5 --json peers.json

For each N: bench/workload.py's N web-1-like VMs (one DataVolume, a shared ConfigMap and Secret, the
cluster instancetype), the workload bench/run.py measures, so smrun's ideal time is known;
``--example`` runs examples/live instead (three VMs with a PreHook, a PVC and a namespaced
instancetype), for which bench/analyze.py cannot compute the ideal. The manifests for the script are rendered once, before
anything is timed (bench/peers/prepare.py). Then each round starts fresh simulated clusters
(bench/simserve.py, as bench/run.py does), runs one tool, stops them, and does the same for the
other tool; the order alternates between rounds so neither always runs on a warmer machine.

Reported per N: each tool's wall time (exec to exit) and CPU seconds (the tool and every process it
started, from RUSAGE_CHILDREN), smrun's ideal time from its run's logs (bench/analyze.py), and the
median of the per-round ratios script/smrun for wall and CPU. Numbers move with machine load;
docs/performance.md says how to read them. Exit status 0 when every run of both tools completed.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

PEERS = Path(__file__).resolve().parent
BENCH = PEERS.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(PEERS))

import analyze  # noqa: E402  (bench/ is a folder of scripts, not a package)
import prepare  # noqa: E402
import run as benchrun  # noqa: E402
import workload  # noqa: E402

EXAMPLE = ROOT / "examples" / "live"


def _example_plan(workdir: Path, kubeconfig: Path) -> tuple[Path, Path, Path, list[str]]:
    """(seed, plan against the served contexts, plan for rendering, VM names) of the example."""
    plan = yaml.safe_load((EXAMPLE / "plan.yaml").read_text(encoding="utf-8"))
    for hook in plan["spec"].get("hooks", []):
        hook["playbook"] = str((EXAMPLE / hook["playbook"]).resolve())
    seed = EXAMPLE / plan["spec"]["simulation"]["seed"]
    del plan["spec"]["simulation"]
    render = json.loads(json.dumps(plan))
    render["spec"]["simulation"] = {"seed": str(seed.resolve())}
    plan["spec"]["source"] = {"kubeconfig": str(kubeconfig), "context": "source"}
    plan["spec"]["target"] = {"kubeconfig": str(kubeconfig), "context": "target"}
    return seed, _dump(workdir / "plan.yaml", plan), _dump(workdir / "render-plan.yaml", render), \
        [v["name"] for v in plan["spec"]["vms"]]


def _workload_plan(workdir: Path, n: int) -> tuple[Path, Path, Path, list[str]]:
    seed, plan_path, _ = workload.write(workdir, n, max_in_flight=n)
    render = yaml.safe_load(plan_path.read_text(encoding="utf-8"))
    del render["spec"]["source"], render["spec"]["target"]
    render["spec"]["simulation"] = {"seed": str(seed.resolve())}
    return seed, plan_path, _dump(workdir / "render-plan.yaml", render), \
        [workload.vm_name(i) for i in range(n)]


def _dump(path: Path, obj: Any) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def _timed(cmd: list[str], out: Path, err: Path) -> tuple[int, float, float]:
    """Run ``cmd``; (exit code, wall seconds, CPU seconds of it and all its descendants)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with out.open("w") as o, err.open("w") as e:
        code = subprocess.run(cmd, stdout=o, stderr=e, check=False).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, wall, cpu


def one_run(tool: str, n: int, workdir: Path, seed: Path, plan: Path, manifests: Path,
            vms: list[str], tick: float) -> dict[str, Any]:
    """One tool on fresh simulated clusters; its record."""
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = workdir / "kubeconfig"
    if tool == "smrun":  # the plan names the kubeconfig path; each run writes its own there
        text = plan.read_text(encoding="utf-8").replace(str(plan.parent / "kubeconfig"),
                                                        str(kubeconfig))
        plan = workdir / "plan.yaml"
        plan.write_text(text, encoding="utf-8")
    sim = benchrun._start_sim(workdir, seed, kubeconfig, tick)
    try:
        if tool == "smrun":
            cmd = [sys.executable, "-m", "statemachine", "run", str(plan), "--output", "json",
                   "--state-dir", str(workdir / "state")]
        else:
            cmd = ["bash", str(PEERS / "live-kubectl.sh"), str(kubeconfig), str(manifests)]
        code, wall, cpu = _timed(cmd, workdir / f"{tool}.out", workdir / f"{tool}.err")
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait()
    record: dict[str, Any] = {"tool": tool, "vms": n, "exit_code": code, "wall_s": round(wall, 3),
                              "cpu_s": round(cpu, 3)}
    if tool == "smrun" and code == 0 and all(analyze.owner(v) for v in vms):
        stats = analyze.summarize(workdir / "requests.jsonl", workdir / "commits.jsonl",
                                  workdir / "smrun.out", vms, n)
        record["ideal_s"] = stats["ideal_s"]
        record["ratio_to_ideal"] = round(wall / stats["ideal_s"], 3) if stats["ideal_s"] else None
    if code != 0:
        tail = (workdir / f"{tool}.err").read_text(encoding="utf-8").strip().splitlines()[-3:]
        record["error"] = " | ".join(tail)
    return record


def compare(n: int, rounds: int, tick: float, root: Path, example: bool = False) -> dict[str, Any]:
    base = root / f"n{n}"
    base.mkdir(parents=True, exist_ok=True)
    kubeconfig = base / "kubeconfig"
    if example:
        seed, plan, render_plan, vms = _example_plan(base, kubeconfig)
    else:
        seed, plan, render_plan, vms = _workload_plan(base, n)
    manifests = base / "manifests"
    prepare.write(manifests, render_plan)
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        order = ("smrun", "kubectl") if r % 2 == 0 else ("kubectl", "smrun")
        for tool in order:
            rec = one_run(tool, n, base / f"round{r}-{tool}", seed, plan, manifests, vms, tick)
            rec["round"] = r
            runs.append(rec)
            print(json.dumps(rec), flush=True)
    ok = all(x["exit_code"] == 0 for x in runs)
    by_round = {r: {x["tool"]: x for x in runs if x["round"] == r} for r in range(rounds)}

    def ratio(key: str) -> float | None:
        vals = [b["kubectl"][key] / b["smrun"][key] for b in by_round.values()
                if b["smrun"]["exit_code"] == 0 and b["kubectl"]["exit_code"] == 0
                and b["smrun"][key]]
        return round(statistics.median(vals), 2) if vals else None

    def median(tool: str, key: str) -> float | None:
        vals = [x[key] for x in runs if x["tool"] == tool and x.get(key) is not None
                and x["exit_code"] == 0]
        return round(statistics.median(vals), 3) if vals else None

    return {"vms": n, "rounds": rounds, "tick_s": tick, "all_completed": ok,
            "smrun_wall_s": median("smrun", "wall_s"), "kubectl_wall_s": median("kubectl", "wall_s"),
            "smrun_cpu_s": median("smrun", "cpu_s"), "kubectl_cpu_s": median("kubectl", "cpu_s"),
            "smrun_ideal_s": median("smrun", "ideal_s"),
            "smrun_ratio_to_ideal": median("smrun", "ratio_to_ideal"),
            "wall_ratio_kubectl_over_smrun": ratio("wall_s"),
            "cpu_ratio_kubectl_over_smrun": ratio("cpu_s"), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vms", default="3,20", help="comma-separated numbers of VMs")
    p.add_argument("--example", action="store_true",
                   help="migrate examples/live (3 VMs) instead of generated VMs")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tick", type=float, default=0.05)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--workdir", type=Path, help="keep the runs' files here (default: a temp dir)")
    args = p.parse_args(argv)
    try:
        sizes = [3] if args.example else [int(x) for x in args.vms.split(",") if x.strip()]
    except ValueError:
        p.error(f"--vms: not a list of numbers: {args.vms!r}")
    if shutil.which("kubectl") is None:
        print("compare.py: kubectl is not on the PATH", file=sys.stderr)
        return 2
    root = args.workdir or Path(tempfile.mkdtemp(prefix="smrun-peers-"))
    results = []
    for n in sizes:
        res = compare(n, args.rounds, args.tick, root, args.example)
        results.append(res)
        print(f"N={n:>3}  smrun {res['smrun_wall_s']}s (ideal {res['smrun_ideal_s']}s, "
              f"ratio {res['smrun_ratio_to_ideal']})  kubectl+bash {res['kubectl_wall_s']}s  "
              f"wall kubectl/smrun {res['wall_ratio_kubectl_over_smrun']}x  "
              f"CPU kubectl/smrun {res['cpu_ratio_kubectl_over_smrun']}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": benchrun.machine(), "results": results},
                                        indent=2), encoding="utf-8")
    return 0 if all(r["all_completed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
