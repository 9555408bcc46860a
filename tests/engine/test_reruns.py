"""Re-runs are explicit (issue 15 item 8), against the simulated clusters over HTTPS:

- ``run_started`` records each cluster's server and kube-system uid (a fresh simulated cluster
  has a fresh uid, as a new real cluster does);
- running a plan whose journal says it completed prints when, the run id and ``smrun run
  --new-run``, exit 0, and touches nothing;
- ``--new-run`` keeps the old journal as ``journal-<run id>.jsonl`` and runs again;
- a journal written against other clusters is refused in one line, exit 2, nothing applied;
- a journal without identities (an older smrun) still resumes, with a warning.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main
from statemachine.engine.journal import Replay, VmRecord
from statemachine.errors import UsageError
from statemachine.plan import VM
from statemachine.reruns import check_same_clusters, preflight_scope
from statemachine.sim.cluster import SimulatedClusters
from tests.engine.test_e2e import DATA, Creations, write_plan


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _kube_system_uid(dynamic_client: Callable[..., Any], sim: SimulatedClusters, cluster: str) -> str:
    api = dynamic_client(sim, cluster).resources.get(api_version="v1", kind="Namespace")
    return str(api.get(name="kube-system").metadata.uid)


@pytest.fixture
def simc(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    return make_sim(seed=DATA / "seed.yaml", tick=0.02)


def test_run_started_records_each_clusters_server_and_identity(
        simc: SimulatedClusters, make_sim: Callable[..., SimulatedClusters], tmp_path: Path,
        dynamic_client: Callable[..., Any]) -> None:
    plan = write_plan(tmp_path, simc, ["web-1"])
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 0
    (started,) = [e for e in _entries(tmp_path / "state" / "e2e" / "journal.jsonl")
                  if e["type"] == "run_started"]
    for cluster in ("source", "target"):
        assert started["clusters"][cluster] == {
            "server": simc.url(cluster), "uid": _kube_system_uid(dynamic_client, simc, cluster)}
        assert simc.url(cluster).startswith("https://127.0.0.1:")
    other = make_sim(seed=DATA / "seed.yaml", tick=0.02)
    assert _kube_system_uid(dynamic_client, other, "target") != \
        _kube_system_uid(dynamic_client, simc, "target")
    assert _kube_system_uid(dynamic_client, simc, "source") != \
        _kube_system_uid(dynamic_client, simc, "target")


def test_a_completed_plan_says_when_and_how_to_run_it_again(
        simc: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, state = write_plan(tmp_path, simc, ["web-1", "web-2"]), tmp_path / "state"
    assert main(["run", str(plan), "--state-dir", str(state)]) == 0
    journal = state / "e2e" / "journal.jsonl"
    entries = _entries(journal)
    run_id, finished = entries[0]["run"], entries[-1]["ts"]
    capsys.readouterr()
    created = Creations(simc)
    assert main(["run", str(plan), "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"plan e2e: completed at {finished} (run {run_id}): all 2 VMs migrated; nothing "
                   f"to do. To migrate again, start a new run: smrun run --new-run {plan}"]
    assert _entries(journal) == entries  # nothing written, nothing run
    assert created.added == {}


def test_new_run_keeps_the_old_journal_and_runs_again(
        simc: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, state = write_plan(tmp_path, simc, ["web-1"]), tmp_path / "state"
    assert main(["run", str(plan), "--state-dir", str(state)]) == 0
    journal = state / "e2e" / "journal.jsonl"
    before = journal.read_text()
    old_run = _entries(journal)[0]["run"]
    capsys.readouterr()
    assert main(["run", "--new-run", str(plan), "--state-dir", str(state)]) == 0
    kept = state / "e2e" / f"journal-{old_run}.jsonl"
    assert kept.read_text() == before
    assert f"the previous journal is kept as {kept}" in capsys.readouterr().out
    entries = _entries(journal)
    assert entries[0]["type"] == "run_started" and entries[0]["run"] != old_run
    assert [e["phase"] for e in entries if e["type"] == "vm_terminal"] == ["Completed"]
    assert any(e["type"] == "state_entered" for e in entries)  # it ran, it did not just report


def test_a_journal_from_other_clusters_is_refused_in_one_line(
        simc: SimulatedClusters, make_sim: Callable[..., SimulatedClusters], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["run", str(write_plan(tmp_path, simc, ["bad-1"])), "--state-dir", str(state)]) == 1
    journal = state / "e2e" / "journal.jsonl"
    before = journal.read_text()
    capsys.readouterr()
    # The same plan now pointed at other clusters (a new simulator: new servers, new uids).
    other = make_sim(seed=DATA / "seed.yaml", tick=0.02)
    created = Creations(other)
    moved = write_plan(tmp_path, other, ["bad-1"])
    assert main(["run", str(moved), "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{journal}: this journal (run "), err
    assert "was written against other clusters (source: server https://127.0.0.1:" in err[0]
    assert "kube-system uid" in err[0] and "smrun run --new-run" in err[0]
    assert journal.read_text() == before and created.added == {}
    # --new-run is the way out: the old journal is kept and the VM runs on the new clusters.
    assert main(["run", "--new-run", str(moved), "--state-dir", str(state)]) == 1  # bad-1 fails again
    assert len(list((state / "e2e").glob("journal-*.jsonl"))) == 1


def test_a_journal_without_identities_still_resumes_with_a_warning(
        simc: SimulatedClusters, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, state = write_plan(tmp_path, simc, ["web-1"]), tmp_path / "state"
    journal = state / "e2e" / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"ts": "2026-12-01T00:00:00.000Z", "type": "run_started",
                                   "run": "20261201000000-abcdef", "vms": ["shop/web-1"]}) + "\n")
    assert main(["run", str(plan), "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {journal}: the journal does not record which clusters it was written " \
           "against (an older smrun); resuming it" in out
    entries = _entries(journal)
    assert entries[0]["run"] == "20261201000000-abcdef"  # resumed: the run id is kept
    assert [e["phase"] for e in entries if e["type"] == "vm_terminal"] == ["Completed"]


def _ids(server: str | None, uid: str | None) -> dict[str, dict[str, str | None]]:
    return {"source": {"server": "https://src:6443", "uid": "s-1"},
            "target": {"server": server, "uid": uid}}


def test_identity_rule_server_or_uid_differs_refuses_unknown_warns(tmp_path: Path) -> None:
    was = Replay("run-1", {}, clusters=_ids("https://dst:6443", "t-1"))
    journal = tmp_path / "journal.jsonl"
    assert check_same_clusters(was, _ids("https://dst:6443", "t-1"), journal) == []
    for now in (_ids("https://dst:6443", "t-2"), _ids("https://elsewhere:6443", "t-1")):
        with pytest.raises(UsageError, match="written against other clusters \\(target: "):
            check_same_clusters(was, now, journal)
    (warning,) = check_same_clusters(was, _ids("https://dst:6443", None), journal)
    assert "target cluster's identity is unknown" in warning
    assert check_same_clusters(Replay(None, {}), _ids("x", "y"), journal) == []


def test_preflight_checks_only_what_the_run_starts_again() -> None:
    # smrun run and the operator both ask preflight_scope: VMs never started, started without
    # recorded predicates, or ended Failed/Canceled are checked; under way or Completed are not
    vms = [VM(name, "shop", name, "shop") for name in ("new", "bare", "failed", "canceled",
                                                       "running", "done")]
    records = {"shop/bare": VmRecord("shop/bare"),
               "shop/failed": VmRecord("shop/failed", predicates={}, terminal="Failed"),
               "shop/canceled": VmRecord("shop/canceled", predicates={}, terminal="Canceled"),
               "shop/running": VmRecord("shop/running", predicates={}),
               "shop/done": VmRecord("shop/done", predicates={}, terminal="Completed")}
    scope = preflight_scope(Replay("run-1", dict(records)), vms, {})
    assert [v.name for v in scope.vms] == ["new", "bare", "failed", "canceled"]
    assert scope.setup and scope.needed and scope.run_id == "run-1"
    assert scope.reads.clusters == {}

    setup_done = {**records, "": VmRecord("", predicates={}, terminal="Completed")}
    scope = preflight_scope(Replay("run-1", setup_done), vms[4:], {})
    assert scope.vms == [] and not scope.setup and not scope.needed

    first = preflight_scope(Replay(None, {}), vms[:1], {})  # no journal yet: a new run id
    assert first.run_id and first.run_id != preflight_scope(Replay(None, {}), [], {}).run_id
