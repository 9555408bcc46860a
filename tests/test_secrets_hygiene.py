"""Secrets never appear in the journal, logs or output (the smrun rule), checked end to end.

The live and the cold example run through ``smrun run`` (subprocesses: ``--output json``, text,
and ``--debug`` once). Every Secret value of the examples' seeds (``data`` decoded from base64,
``stringData`` as written) and the export token the simulator generates for the cold run are then
searched for in stdout, stderr (the DEBUG log included), every file of the state directory,
``smrun status`` and ``smrun render`` (masked). The cold run is also killed (tests/crashrun.py)
right after the state that reads the token, and the rerun must complete: the token is re-read
from the source, not from the journal.

Not covered here: the warm itinerary (another suite) and values a user puts in outputs
themselves (docs/itinerary.md: never put secrets in outputs).
"""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan
from statemachine.render import MASK, PendingRead, format_manifests, render_plan
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.offline import seed_reads

REPO = Path(__file__).resolve().parents[1]
LIVE_PLAN = REPO / "examples" / "live" / "plan.yaml"
COLD_PLAN = REPO / "examples" / "cold" / "plan.yaml"
SMRUN = [sys.executable, "-m", "statemachine"]
RUN_TIMEOUT = 240


# -- what must never be seen ------------------------------------------------------------------------

def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("kind") == "Secret":
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _needles(value: str) -> set[str]:
    """The value as it could be printed: raw, JSON-escaped, and each distinctive line of it.

    Lines shorter than 16 characters and PEM armour are left out: the seeds' fake PEM bodies
    share short lines (``c2ltdWxhdGVk``) with public CA bundles that are rightly journaled.
    """
    out = {n for n in (value, json.dumps(value)[1:-1]) if len(n) >= 8}
    out |= {line.strip() for line in value.splitlines()
            if len(line.strip()) >= 16 and not line.strip().startswith("-----")}
    return out


def seed_secret_values(plan_file: Path) -> set[str]:
    plan = yaml.safe_load(plan_file.read_text())
    seed = plan_file.parent / plan["spec"]["simulation"]["seed"]
    found: set[str] = set()
    for doc in yaml.safe_load_all(seed.read_text()):
        for secret in _walk(doc):
            for encoded in (secret.get("data") or {}).values():
                found |= _needles(base64.b64decode(encoded).decode())
                found.add(str(encoded))
            for text in (secret.get("stringData") or {}).values():
                found |= _needles(str(text))
    return found


def assert_clean(where: str, text: str, needles: set[str]) -> None:
    leaked = sorted(n for n in needles if n in text)
    assert not leaked, f"secret values in {where}: {[n[:12] + '...' for n in leaked]}"


def state_files(state_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(state_dir)): p.read_text(errors="replace")
            for p in sorted(state_dir.rglob("*")) if p.is_file()}


# -- helpers --------------------------------------------------------------------------------------

def smrun(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMRUN, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=cwd,
                          env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))


def check_outputs(plan: Path, state: Path, tmp_path: Path, needles: set[str]) -> None:
    """The state directory, ``smrun status`` (text and JSON) and ``smrun render`` are clean."""
    files = state_files(state / yaml.safe_load(plan.read_text())["metadata"]["name"])
    assert "journal.jsonl" in files
    for name, text in files.items():
        assert_clean(f"state file {name}", text, needles)
    for output in ("text", "json"):
        status = smrun("status", str(plan), "--state-dir", str(state), "--output", output, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert_clean(f"smrun status --output {output}", status.stdout + status.stderr, needles)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# -- the runs -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_live_example_leaks_no_secret(tmp_path: Path) -> None:
    needles = seed_secret_values(LIVE_PLAN)
    assert len(needles) >= 3  # the example has Secrets to copy: the test must see them
    state = tmp_path / "state"
    proc = smrun("run", str(LIVE_PLAN), "--output", "json", "--state-dir", str(state), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any(e["event"] == "run_finished" for e in _events(proc.stdout))
    assert_clean("smrun run --output json (stdout)", proc.stdout, needles)
    assert_clean("smrun run --output json (stderr)", proc.stderr, needles)
    check_outputs(LIVE_PLAN, state, tmp_path, needles)
    render = smrun("render", str(LIVE_PLAN), cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert MASK in render.stdout
    assert_clean("smrun render", render.stdout + render.stderr, needles)


def _cold_against(sim: SimulatedClusters, tmp_path: Path) -> Path:
    plan = yaml.safe_load(COLD_PLAN.read_text())
    plan["spec"].pop("simulation")
    plan["spec"]["source"] = {"kubeconfig": str(sim.kubeconfig_path), "context": "source"}
    plan["spec"]["target"] = {"kubeconfig": str(sim.kubeconfig_path), "context": "target"}
    out = tmp_path / "cold-plan.yaml"
    out.write_text(yaml.safe_dump(plan))
    return out


@pytest.mark.slow
def test_cold_example_leaks_no_secret_and_resumes_after_the_token_read(
        make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    seed = COLD_PLAN.parent / yaml.safe_load(COLD_PLAN.read_text())["spec"]["simulation"]["seed"]
    sim = make_sim(seed=seed.resolve(), tick=0.02)
    tokens: set[str] = set()
    lock = threading.Lock()

    def capture(event: Any) -> None:  # the simulator generates each export's token: record it
        obj = event.obj
        if event.kind.kind == "Secret" and obj["metadata"]["name"].startswith("export-token-"):
            token = base64.b64decode((obj.get("data") or {}).get("token", "")).decode()
            if token:
                with lock:
                    tokens.add(token)

    unsubscribe = sim.store("source").subscribe(capture)
    plan = _cold_against(sim, tmp_path)
    state = tmp_path / "state"
    try:
        # First run: text output, --debug (DEBUG logs on stderr), killed right after the state
        # that read the token and wrote the target's header Secret.
        crashed = subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parent / "crashrun.py"),
             "state_completed:CreateImportSecrets:1", "--", "--debug", "run", str(plan),
             "--state-dir", str(state)], capture_output=True, text=True, timeout=RUN_TIMEOUT,
            cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert crashed.returncode == -9, crashed.stdout[-2000:] + crashed.stderr[-2000:]
        assert " DEBUG " in crashed.stderr  # the debug log really was on
        again = smrun("run", str(plan), "--output", "json", "--state-dir", str(state), cwd=tmp_path)
    finally:
        unsubscribe()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    finished = [e["vm"] for e in _events(again.stdout) if e["event"] == "vm_succeeded"]
    assert sorted(finished) == ["shop/batch-1", "shop/db-1", "shop/web-1"]
    assert tokens, "no export token was generated"
    needles = seed_secret_values(COLD_PLAN)
    for token in tokens:
        header = f"x-kubevirt-export-token:{token}"
        needles |= {token, base64.b64encode(token.encode()).decode(), header,
                    base64.b64encode(header.encode()).decode()}
    for name, proc in (("--debug run (text)", crashed), ("run --output json", again)):
        assert_clean(f"smrun {name} stdout", proc.stdout, needles)
        assert_clean(f"smrun {name} stderr", proc.stderr, needles)
    check_outputs(plan, state, tmp_path, needles)
    # The state directory is private, whatever the umask of the test runner.
    plan_dir = state / "cold-demo"
    assert stat.S_IMODE(plan_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((plan_dir / "journal.jsonl").stat().st_mode) == 0o600
    render = smrun("render", str(COLD_PLAN), cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert_clean("smrun render", render.stdout + render.stderr, needles)


# -- render: state reads before a run ---------------------------------------------------------------

def test_render_shows_a_pending_state_read_as_a_masked_placeholder() -> None:
    plan = load_plan(COLD_PLAN)
    rendered = render_plan(plan, load_itinerary("cold"), seed_reads(plan), vms=["web-1"])
    (header,) = [r for r in rendered if r.action == "apply" and r.manifest["kind"] == "Secret"
                 and r.manifest["metadata"]["name"] == "web-1-export-token"]
    assert header.state == "CreateImportSecrets"
    # Before the run the export token Secret does not exist: the template still renders...
    assert base64.b64decode(header.manifest["data"]["token"]).decode().startswith(
        "x-kubevirt-export-token:")
    # ...and what is printed is masked.
    text = format_manifests([header])
    assert f"token: {MASK}" in text or f"token: '{MASK}'" in text


def test_pending_read_placeholder_names_its_path() -> None:
    pending = PendingRead("exportToken")
    assert pending == "<read:exportToken>"
    assert pending.data.token == "<read:exportToken.data.token>"
    assert pending["data"]["token"] == "<read:exportToken.data.token>"
    assert pending[0] == "<"
    with pytest.raises(AttributeError):
        pending.__secret__  # noqa: B018 - dunders are not placeholders


def test_operator_kubeconfig_secret_stays_in_its_file(sim: SimulatedClusters, tmp_path: Path) -> None:
    """`smrun operator`'s `spec.source|target.kubeconfigSecret` (issue 12 item 3): the kubeconfig
    goes to a mode-0600 file and nowhere else; the Plan handed on names the file, and a refusal
    names the Secret and the key, never the content. (End to end, with status, Events, logs and
    the state directory searched: tests/operator_mode, test_credentials_from_a_secret_never_leak.)"""
    from statemachine.k8s.client import connect
    from statemachine.operator import credentials

    text = sim.kubeconfig_path.read_text(encoding="utf-8")
    token = next(u["user"]["token"] for u in yaml.safe_load(text)["users"] if u["user"].get("token"))
    api = connect(name="operator", kubeconfig=sim.kubeconfig_path, context="target",
                  cache_dir=tmp_path / "cache")
    try:
        for name, key, value in (("clusters", "kubeconfig", text),
                                 ("bad", "other", "password: s3cr3t-value\n")):
            api.create({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": name, "namespace": "default"},
                        "data": {key: base64.b64encode(value.encode()).decode()}})
        obj = {"metadata": {"namespace": "default", "name": "p"}, "spec": {
            "source": {"kubeconfigSecret": {"name": "clusters", "context": "source"}},
            "target": {"kubeconfigSecret": {"name": "bad", "key": "other"}},
            "vms": [{"name": "vm", "namespace": "default"}]}}
        resolved, problems = credentials.resolve(api, obj, tmp_path / "cred", own=(None, None))
    finally:
        api.close()
    written = Path(resolved["spec"]["source"]["kubeconfig"])
    assert resolved["spec"]["source"]["context"] == "source"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text(encoding="utf-8") == text
    assert problems == ["spec.target.kubeconfigSecret: key 'other' of Secret default/bad is not "
                        "a kubeconfig"]
    said = json.dumps(resolved) + "\n".join(problems)
    assert token not in said and "s3cr3t" not in said
    assert not (tmp_path / "cred" / "target.kubeconfig").exists()
