"""`smrun run` and `smrun validate` against a cluster that cannot be reached, end to end (a
process of their own, as an admin runs them): exit 3, a short note per cluster while smrun
retries, then the one-line error; never the client library's retry lines or reprs, unless
``--debug``, which still shows every attempt and the traceback.

Before: ~60 stderr lines, 24 per cluster from urllib3's own retry inside each of smrun's 8 tries
(``Retrying (Retry(total=2, ...)) after connection broken by 'NewConnectionError(...)'``) and
7 per cluster of smrun's per-attempt WARNINGs.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from statemachine.sim.cluster import SimulatedClusters

DEAD = "https://127.0.0.1:1"  # a port nobody listens on: every connection is refused
# The final line in smrun's words: the cluster, its server and the cause (the library's text,
# "HTTPSConnection(host='127.0.0.1', port=1): Failed to establish ...", only with --debug).
FINAL = "cluster {name}: cannot reach the API server at https://127.0.0.1:1: connection refused"
NOTE = ("smrun: WARNING: cluster {name} (https://127.0.0.1:1) cannot be reached; retrying up to "
        "7 more times within 60 s")
REPRS = ("Retry(", "NewConnectionError(", "Retrying", "urllib3", "Traceback", "HTTPSConnection",
         "Errno")


def _kubeconfig(tmp_path: Path, live: SimulatedClusters | None = None) -> Path:
    """Contexts ``source`` and ``target`` on a dead server; with ``live``, ``source`` is that
    simulator's (it answers)."""
    if live is not None:
        config = yaml.safe_load(live.kubeconfig_path.read_text())
        source = next(c for c in config["contexts"] if c["name"] == "source")["context"]
        server = next(c for c in config["clusters"] if c["name"] == source["cluster"])["cluster"]
        config["clusters"].append({"name": "dead", "cluster": {**server, "server": DEAD}})
        config["contexts"] = [{"name": "source", "context": source},
                              {"name": "target", "context": {**source, "cluster": "dead"}}]
    else:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "source",
                  "clusters": [{"name": "dead", "cluster": {"server": DEAD}}],
                  "users": [{"name": "u", "user": {"token": "x"}}],
                  "contexts": [{"name": n, "context": {"cluster": "dead", "user": "u"}}
                               for n in ("source", "target")]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def _plan(tmp_path: Path, kubeconfig: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "smrun.io/v1alpha1", "kind": "Plan", "metadata": {"name": "unreachable"},
        "spec": {"type": "live",
                 "source": {"kubeconfig": str(kubeconfig), "context": "source"},
                 "target": {"kubeconfig": str(kubeconfig), "context": "target"},
                 "vms": [{"name": "web-1", "namespace": "shop"}]}}))
    return path


def _smrun(*argv: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "statemachine", *argv], capture_output=True,
                          text=True, timeout=120)
    return proc, time.monotonic() - started


def _commands(tmp_path: Path, plan: Path) -> dict[str, list[str]]:
    return {"run": ["run", str(plan), "--state-dir", str(tmp_path / "state")],
            "validate": ["validate", str(plan)]}


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unreachable_cluster_is_a_note_per_cluster_then_one_line(
        tmp_path: Path, command: str) -> None:
    plan = _plan(tmp_path, _kubeconfig(tmp_path))
    proc, took = _smrun(*_commands(tmp_path, plan)[command])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 3, proc.stderr
    assert lines[-1] == FINAL.format(name="source"), proc.stderr
    # While smrun retries: one line per cluster that cannot be reached, when it first fails.
    assert sorted(lines[:-1]) == [NOTE.format(name="source"), NOTE.format(name="target")], \
        proc.stderr
    assert not any(r in line for line in lines for r in REPRS), proc.stderr
    # smrun's policy alone decides the time to the error: 8 tries with full-jitter backoff of at
    # most 0.05 + 0.1 + ... + 3.2 = 6.35 s in all (and each refused connection fails at once).
    assert took < 30, took


def test_a_cluster_that_answers_beside_one_that_does_not(sim: SimulatedClusters,
                                                         tmp_path: Path) -> None:
    plan = _plan(tmp_path, _kubeconfig(tmp_path, live=sim))
    proc, _ = _smrun(*_commands(tmp_path, plan)["run"])
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [NOTE.format(name="target"), FINAL.format(name="target")]


def test_debug_still_shows_every_attempt_and_the_library_detail(tmp_path: Path) -> None:
    plan = _plan(tmp_path, _kubeconfig(tmp_path))
    proc, _ = _smrun(*_commands(tmp_path, plan)["run"], "--debug")
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr
    for attempt in range(1, 8):
        assert f"retrying discover cluster source after ClusterUnreachable (status none, " \
               f"attempt {attempt}/8" in err, err
    assert "DEBUG urllib3.connectionpool: Starting new HTTPS connection" in err
    assert "urllib3.exceptions.NewConnectionError" in err and "Traceback" in err
    assert err.rstrip().splitlines()[-1] == FINAL.format(name="source")
