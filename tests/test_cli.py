"""The smrun command line: commands, delegation to the engine, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

import statemachine.cli as cli
import statemachine.commands as commands
from statemachine.cli import main
from statemachine.errors import PreflightError

DATA = Path(__file__).parent / "data" / "plans"
SIM_PLAN = DATA / "valid" / "sim-live.yaml"
CLUSTER_PLAN = DATA / "valid" / "clusters.yaml"
ROOT = Path(__file__).resolve().parent.parent


class FakeEngine:
    """Records the calls the CLI makes to ``statemachine.commands``."""

    def __init__(self, code: int = 0) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.code = code

    def start(self, plan: Any, *, state_dir: Path) -> Any:
        """``commands.start``: locks nothing and connects nothing here."""
        self.started = (plan.name, state_dir)
        return self

    def close(self) -> None:  # the Started handed back when the itinerary does not load
        self.calls.append(("close", (), {}))

    def run(self, *args: Any, **kwargs: Any) -> int:
        assert kwargs.pop("started") is self  # what start() returned, handed on to run()
        self.calls.append(("run", args, kwargs))
        return self.code

    def status(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(("status", args, kwargs))
        return [{"vm": "shop/web-1", "state": "CreateStandbyVM", "phase": "Running"}]

    def cancel(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append(("cancel", args, kwargs))
        return self.code

    def preflight(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append(("preflight", args, kwargs))
        return self.code


def _use(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    for name in ("start", "run", "status", "cancel", "preflight"):
        if hasattr(fake, name):
            monkeypatch.setattr(commands, name, getattr(fake, name))


@pytest.fixture()
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    _use(monkeypatch, fake)
    return fake


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "validate", "render", "graph", "status", "cancel", "cutover", "itineraries", "sim"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("smrun 0.")


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: smrun" in capsys.readouterr().err


def test_a_bare_plan_means_run(engine: FakeEngine) -> None:
    assert main([str(SIM_PLAN)]) == 0
    (name, args, kwargs), = engine.calls
    assert name == "run"
    assert args[0].name == "sim-live" and args[1].name == "live"
    assert kwargs == {"state_dir": Path(".smrun"), "max_in_flight": None, "vms": None, "output": "text",
                      "stream": sys.stdout, "resync": None, "new_run": False}
    assert engine.started == ("sim-live", Path(".smrun"))  # locked before the itinerary loaded


def test_run_passes_its_options_and_returns_the_engines_code(engine: FakeEngine, tmp_path: Path) -> None:
    engine.code = 1
    assert main(["run", str(SIM_PLAN), "--output", "json", "--state-dir", str(tmp_path),
                 "--max-in-flight", "3", "--vm", "shop/web-1"]) == 1
    kwargs = engine.calls[0][2]
    assert (kwargs["output"], kwargs["state_dir"], kwargs["max_in_flight"], kwargs["vms"]) == \
        ("json", tmp_path, 3, ["shop/web-1"])
    assert main(["run", str(SIM_PLAN), "--new-run"]) == 1
    assert engine.calls[1][2]["new_run"] is True


def test_run_refuses_a_vm_that_is_not_in_the_plan(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(SIM_PLAN), "--vm", "nope"]) == 2
    assert engine.calls == []
    assert capsys.readouterr().err.strip() == f"{SIM_PLAN}: --vm nope: no such VM in the plan (known: shop/web-1)"


@pytest.mark.parametrize("value", ["0", "x"])
def test_bad_option_values_are_usage_errors(engine: FakeEngine, capsys: pytest.CaptureFixture[str],
                                            value: str) -> None:
    assert main(["run", str(SIM_PLAN), "--max-in-flight", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-in-flight" in err[0]


def test_status_prints_a_table_or_json_lines(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(SIM_PLAN)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["VM", "STATE", "PHASE"] and "CreateStandbyVM" in table[1]
    assert main(["status", str(SIM_PLAN), "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"phase": "Running", "state": "CreateStandbyVM",
                                                   "vm": "shop/web-1"}


def test_cancel_passes_the_vms(engine: FakeEngine) -> None:
    assert main(["cancel", str(SIM_PLAN), "--vm", "web-1"]) == 0
    assert engine.calls[0][0] == "cancel" and engine.calls[0][2]["vms"] == ["web-1"]


def test_validate_offline_checks_and_renders_a_simulated_plan(engine: FakeEngine,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--offline", str(SIM_PLAN)]) == 0
    out = capsys.readouterr().out
    assert "plan 'sim-live' is valid" in out and "manifests rendered" in out
    assert engine.calls == []


def test_validate_runs_the_engine_preflight_unless_offline(engine: FakeEngine) -> None:
    assert main(["validate", str(CLUSTER_PLAN)]) == 0
    assert [c[0] for c in engine.calls] == ["preflight"]


def test_a_refused_preflight_exits_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> int:
        raise PreflightError("preflight refused the plan", ["shop/web-1: SourceRunning: not running"])

    _use(monkeypatch, SimpleNamespace(preflight=refuse))
    assert main(["validate", str(CLUSTER_PLAN)]) == 3
    assert "  - shop/web-1: SourceRunning: not running" in capsys.readouterr().err


def test_render_prints_whole_documents_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    plan = DATA / "render-plan.yaml"
    assert main(["render", str(plan)]) == 0
    text = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs and all(d["apiVersion"] and d["kind"] and d["metadata"]["name"] for d in docs)
    assert "hunter2" not in text
    assert main(["render", str(plan), "--show-secrets"]) == 0
    assert "hunter2" in capsys.readouterr().out


def test_render_of_a_plan_without_simulation_reads_its_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 15: no longer refused; the reads come from the clusters (tests/language has the
    # end-to-end test against the simulator).
    seen: list[Any] = []
    monkeypatch.setattr(commands, "render_live", lambda plan, it, vms=None: seen.append(plan.name) or [])
    assert main(["render", str(CLUSTER_PLAN)]) == 0
    assert len(seen) == 1


def test_graph_of_a_builtin_type_and_of_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "live"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stateDiagram-v2") and "CreateStandbyVM" in out
    assert main(["graph", str(DATA / "render" / "itinerary.yaml")]) == 0
    assert "CopySecrets" in capsys.readouterr().out


def test_graph_with_a_plan_marks_the_states_its_predicates_switch_off(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "live", "--plan", str(SIM_PLAN), "--vm", "web-1"]) == 0
    out = capsys.readouterr().out
    assert "class PreHook skipped" in out
    assert "class PostHook skipped" not in out  # web-1 has a PostHook


def test_graph_plan_needs_vm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "live", "--plan", str(SIM_PLAN)]) == 2
    assert "--plan and --vm go together" in capsys.readouterr().err


def test_graph_of_an_unknown_type_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "teleport"]) == 2
    assert "teleport" in capsys.readouterr().err


def test_itineraries_lists_the_builtins_with_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["itineraries"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:2] == ["NAME", "TYPE"]
    assert [r.split()[0] for r in rows[1:4]] == ["cold", "live", "warm"]


def test_sim_serve_is_delegated_with_the_remaining_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import statemachine.sim.serve as serve

    seen: list[list[str]] = []
    monkeypatch.setattr(serve, "main", lambda argv: seen.append(list(argv)) or 0)
    assert main(["--debug", "sim", "serve", "--seed", "x.yaml", "--tick", "0.1"]) == 0
    assert seen == [["--seed", "x.yaml", "--tick", "0.1"]]


def test_sim_without_serve_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "stop"]) == 2
    assert "serve" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_itineraries", interrupted)
    assert main(["itineraries"]) == 130
    assert capsys.readouterr().err.strip() == "smrun: interrupted"


def test_a_bug_is_one_line_without_debug_and_a_traceback_with_it(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_args: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_cmd_itineraries", broken)
    assert main(["itineraries"]) == 70  # its own code: 1 means "a VM failed"
    err = capsys.readouterr().err
    assert err.strip() == "smrun: internal error: RuntimeError: boom (run with --debug for details)"
    assert main(["--debug", "itineraries"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_an_invalid_plan_is_one_line_per_problem_and_exit_2(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("apiVersion: smrun.io/v1alpha1\nkind: Plan\nmetadata: {name: p}\nspec:\n"
                    "  simulaton: {seed: x}\n  vms: []\n", encoding="utf-8")
    assert main(["validate", str(plan)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{plan}:5: spec.simulaton: unknown field 'simulaton' (did you mean 'simulation'?)",
                   f"{plan}:6: spec.vms: [] should be non-empty"]


def _imported_modules(*argv: str) -> set[str]:
    code = ("import sys\nfrom statemachine.cli import main\n"
            f"code = main({list(argv)!r})\n"
            "print('\\n'.join(sys.modules), file=sys.stderr)\nsys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stderr.split())


@pytest.mark.parametrize("argv", [
    ("--help",),
    ("validate", "--offline", str(SIM_PLAN)),
    ("render", str(DATA / "render-plan.yaml")),
    ("graph", "live", "--plan", str(SIM_PLAN), "--vm", "web-1"),
    ("itineraries",),
], ids=["help", "validate", "render", "graph", "itineraries"])
def test_definition_commands_never_import_the_kubernetes_client(argv: tuple[str, ...]) -> None:
    modules = _imported_modules(*argv)
    assert "statemachine.cli" in modules
    assert not [m for m in modules if m == "kubernetes" or m.startswith("kubernetes.")]


def test_render_vm_selects_one_vm_and_rejects_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    plan = DATA / "render-plan.yaml"
    assert main(["render", str(plan), "--vm", "shop/web-1"]) == 0
    assert "# shop/web-1: CopySecrets[0]" in capsys.readouterr().out
    assert main(["render", str(plan), "--vm", "web-9"]) == 2
    assert "--vm web-9: no such VM in the plan" in capsys.readouterr().err


def test_validate_accepts_an_itinerary_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DATA / "render" / "itinerary.yaml")]) == 0
    assert "itinerary 'tiny' is valid" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "statemachine", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("smrun ")


REPO_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("args, says", [
    (["examples/live/plan.yaml", "--at", "now"], "only warm migrations have a cutover"),
    (["examples/warm/plan.yaml", "--at", "tomorrow"], "--at 'tomorrow': not an RFC 3339 time"),
    (["examples/warm/plan.yaml", "--at", "2026-12-01T02:00:00"], "--at"),
    (["examples/warm/plan.yaml", "--at", "now", "--vm", "nope"], "--vm nope: no such VM"),
])
def test_cutover_refuses_bad_input_with_one_line(args: list[str], says: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    plan = str(REPO_EXAMPLES.parent / args[0])
    assert main(["cutover", plan, *args[1:], "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "warm-demo" / "cutover.json").exists()  # nothing written


def test_cutover_writes_the_override_the_running_engine_reads(tmp_path: Path) -> None:
    plan = str(REPO_EXAMPLES / "warm" / "plan.yaml")
    assert main(["cutover", plan, "--at", "2026-12-01T03:00:00+01:00", "--vm", "ledger-1",
                 "--state-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "warm-demo" / "cutover.json").read_text())
    assert data["vms"] == {"ledger/ledger-1": "2026-12-01T02:00:00Z"}  # normalised to UTC


def test_status_shows_each_warm_round_on_its_own_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeEngine()
    rounds = [{"round": 0, "type": "Full", "bytes": 15032385536},
              {"round": 1, "type": "Incremental", "bytes": 1879048192}]
    monkeypatch.setattr(fake, "status", lambda *a, **k: [
        {"vm": "ledger/ledger-1", "phase": "Running", "state": "PrecopyWait",
         "outputs": {"rounds": rounds, "backupCert": "-----BEGIN CERTIFICATE-----\n" + "x" * 200}}])
    _use(monkeypatch, fake)
    assert main(["status", str(SIM_PLAN)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["VM", "PHASE", "STATE"]
    assert "    round=0  type=Full  bytes=15032385536" in out
    assert "    round=1  type=Incremental  bytes=1879048192" in out
    cert = next(line for line in out if line.startswith("  backupCert:"))
    assert len(cert) < 80 and cert.endswith("…")  # long values are cut, not dumped


@pytest.mark.parametrize("argv", [["operator", "manifests", "--namespace", "Bad_NS"],
                                  ["operator", "--namespace", "x.y"]])
def test_operator_namespaces_must_be_namespace_names(argv: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--namespace" in err[0] and "is not a namespace name" in err[0]
