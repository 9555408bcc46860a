"""Small pure parts of the engine: journal replay, label values, RBAC rules, progress renderers."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from statemachine.context import labels_for
from statemachine.engine.actions import is_ours, stamp
from statemachine.engine.journal import Journal, JournalCorrupt, read_cancel, read_entries, request_cancel
from statemachine.engine.preflight import plural, role_rules
from statemachine.engine.progress import JsonLines, LiveTable, PlainLines, renderer_for

REF = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "a"}


def test_replay_folds_entries_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    j = Journal(tmp_path / "p")
    j.append("run_started", run="r1", vms=["shop/vm"])
    j.append("vm_started", vm="shop/vm", predicates={"HasPreHook": False}, reads={})
    j.append("state_entered", vm="shop/vm", state="A")
    j.append("intent", vm="shop/vm", state="A", cluster="target", ref=REF, action="apply", hash="h")
    j.append("created", vm="shop/vm", state="A", cluster="target", ref=REF, ours=True)
    j.append("outputs", vm="shop/vm", state="A", values={"x": 1})
    j.append("state_completed", vm="shop/vm", state="A")
    j.close()
    with open(j.path, "ab") as fh:
        fh.write(b'{"ts": "2026", "type": "state_ent')  # killed mid-write
    replay = Journal(tmp_path / "p").read()
    rec = replay.vms["shop/vm"]
    assert replay.run_id == "r1"
    assert (rec.state, rec.state_done, rec.outputs, rec.predicates) == ("A", True, {"x": 1}, {"HasPreHook": False})
    assert [(c.ref.name, c.confirmed) for c in rec.created] == [("a", True)]


def test_resuming_after_a_torn_last_line_keeps_the_journal_readable(tmp_path: Path) -> None:
    """The resumed run appends after the torn fragment: that fragment must not glue onto the
    next entry and become a corrupt line in the middle (which would make the plan unresumable)."""
    j = Journal(tmp_path / "p")
    j.append("run_started", run="r1", vms=["shop/vm"])
    j.append("state_entered", vm="shop/vm", state="A")
    j.close()
    with open(j.path, "ab") as fh:
        fh.write(b'{"ts": "2026", "type": "state_ent')  # killed mid-write
    resumed = Journal(tmp_path / "p")
    resumed.append("state_entered", vm="shop/vm", state="B")
    resumed.close()
    entries = list(read_entries(j.path))
    assert [e.get("state") for e in entries if e["type"] == "state_entered"] == ["A", "B"]
    assert Journal(tmp_path / "p").read().vms["shop/vm"].state == "B"


def test_a_state_dir_that_is_a_file_is_a_state_dir_error_not_a_crash(tmp_path: Path) -> None:
    from statemachine.errors import StateDirError

    (tmp_path / "file").write_text("x")
    with pytest.raises(StateDirError, match="cannot use it as the state directory: not a directory") \
            as info:
        Journal.for_plan(tmp_path / "file", "plan").lock()
    assert info.value.exit_code == 4


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"type": "run_started"}\nnot json\n{"type": "run_finished"}\n')
    with pytest.raises(JournalCorrupt, match="journal.jsonl:2"):
        list(read_entries(path))


def test_an_intent_without_created_stays_unconfirmed_and_found_objects_are_not_ours(tmp_path: Path) -> None:
    j = Journal(tmp_path / "p", fsync=False)
    j.append("vm_started", vm="v", predicates={})
    j.append("intent", vm="v", state="A", cluster="target", ref=REF, action="apply", hash="h")
    j.append("intent", vm="v", state="A", cluster="target", ref={**REF, "name": "b"}, action="ensure", hash="h")
    j.append("created", vm="v", state="A", cluster="target", ref={**REF, "name": "b"}, ours=False)
    rec = j.read().vms["v"]
    assert [(c.ref.name, c.confirmed) for c in rec.created] == [("a", False)]


def test_cancel_requests_accumulate_and_all_wins(tmp_path: Path) -> None:
    assert read_cancel(tmp_path) == set()
    request_cancel(tmp_path, ["vm-1"])
    request_cancel(tmp_path, ["vm-2"])
    assert read_cancel(tmp_path) == {"vm-1", "vm-2"}
    request_cancel(tmp_path, None)
    assert read_cancel(tmp_path) is None


def test_label_values_are_valid_and_long_ones_stay_distinct() -> None:
    """The engine stamps ``context.labels_for`` (the one label algorithm) on what it creates."""
    from .flows import plan, vm

    short = labels_for(plan("web", ["web-1"]), vm("web-1"), run_id="r1", state="Started")
    assert short == {"smrun.io/plan": "web", "smrun.io/vm": "web-1", "smrun.io/vm-namespace": "shop",
                     "smrun.io/state": "Started", "smrun.io/run": "r1"}
    long_a = labels_for(plan("x" * 80 + "a", ["v"]), None, run_id="r1")["smrun.io/plan"]
    long_b = labels_for(plan("x" * 80 + "b", ["v"]), None, run_id="r1")["smrun.io/plan"]
    assert len(long_a) <= 63 and long_a != long_b


def test_stamp_adds_labels_and_hash_without_touching_the_input() -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    labels = {"smrun.io/plan": "p", "smrun.io/vm": "v", "smrun.io/vm-namespace": "shop"}
    out = stamp(manifest, labels)
    assert "labels" not in manifest["metadata"]
    assert out["metadata"]["labels"] == labels and len(out["metadata"]["annotations"]["smrun.io/manifest-hash"]) == 64
    assert is_ours(out, labels) and not is_ours(manifest, labels)
    assert not is_ours(stamp(manifest, {**labels, "smrun.io/vm": "other"}), labels)


def test_role_rules_group_by_cluster_and_namespace() -> None:
    assert (plural("NetworkPolicy"), plural("Job"), plural("VirtualMachineInstanceMigration")) == \
        ("networkpolicies", "jobs", "virtualmachineinstancemigrations")
    text = "\n".join(role_rules({("target", "shop"): {("batch", "jobs"): {"create", "delete"}}}))
    assert "# target cluster: Role in namespace shop" in text
    assert 'apiGroups: ["batch"]' in text and 'verbs: ["create", "delete"]' in text


EVENTS = [
    {"event": "run_started", "plan": "p", "run": "r", "vms": 1, "message": ""},
    {"event": "state_entered", "plan": "p", "vm": "shop/a", "state": "RunJob", "step": "Work", "message": ""},
    {"event": "state_waiting", "plan": "p", "vm": "shop/a", "state": "RunJob", "message": "waiting for Job shop/a",
     "waiting_for": "Job shop/a", "progress": "50%"},
    {"event": "vm_failed", "plan": "p", "vm": "shop/a", "state": "Failed", "message": "RunJob: failed"},
    {"event": "run_finished", "plan": "p", "message": "0 completed, 1 failed, 0 canceled", "failed": 1},
]


def test_renderers() -> None:
    out = io.StringIO()
    sink = JsonLines(out)
    for e in EVENTS:
        sink(e)
    assert out.getvalue() == ""  # written once per batch of the engine's steps, at flush()
    sink.flush()
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [e["event"] for e in EVENTS]
    plain = io.StringIO()
    plain_sink = PlainLines(plain)
    for e in EVENTS:
        plain_sink(e)
    plain_sink.flush()
    lines = plain.getvalue().splitlines()
    assert "shop/a: RunJob: waiting for Job shop/a (50%)" in lines and "shop/a: Failed: RunJob: failed" in lines
    table = io.StringIO()
    live = LiveTable(table, interval=0)
    for e in EVENTS:
        live(e)
    assert "shop/a" in table.getvalue() and "finished: 0 completed, 1 failed" in table.getvalue()
    assert isinstance(renderer_for("text", io.StringIO()), PlainLines)
    assert isinstance(renderer_for("json", io.StringIO()), JsonLines)


def test_the_live_table_shows_progress_before_the_object() -> None:
    table = io.StringIO()
    live = LiveTable(table, interval=0)
    live({"event": "state_waiting", "plan": "p", "vm": "shop/a", "state": "CopyDisks",
          "waiting_for": "DataVolume shop/a-very-long-name-that-would-push-progress-out-of-sight",
          "progress": "rootdisk 42.0%", "message": ""})
    row = [line for line in table.getvalue().splitlines() if line.startswith("shop/a")][-1]
    assert "rootdisk 42.0% · DataVolume" in row  # at least 30 columns, whatever the terminal


def test_the_live_table_stays_short_with_many_vms() -> None:
    table = io.StringIO()
    live = LiveTable(table, interval=3600, max_rows=3)
    for i in range(10):
        live({"event": "state_entered", "plan": "p", "vm": f"shop/v{i}", "state": "A", "step": "", "message": ""})
    live({"event": "vm_succeeded", "plan": "p", "vm": "shop/v0", "state": "Completed", "message": ""})
    live.draw()
    last = table.getvalue().split("\x1b[J")[-1].splitlines()
    assert len(last) == 5 and last[-1] == "... 7 more; 1 Completed, 9 running"


def test_patch_templates_render_to_a_patch_body_not_a_manifest(tmp_path: Path) -> None:
    """`patch: {template: file}` files hold a merge patch (a mapping without apiVersion/kind) or a
    JSON patch (a list); the engine must not demand a Kubernetes object of them."""
    from statemachine.engine.lang import Language
    (tmp_path / "owner.yaml.j2").write_text(
        "metadata:\n  ownerReferences:\n    - {kind: VirtualMachine, name: {{ vm.name | tojson }}}\n")
    (tmp_path / "ops.yaml.j2").write_text("- {op: add, path: /metadata/labels/x, value: y}\n")
    lang = Language(tmp_path)
    merge = lang.render_patch("owner.yaml.j2", {"vm": {"name": "web-1"}})
    assert merge == {"metadata": {"ownerReferences": [{"kind": "VirtualMachine", "name": "web-1"}]}}
    assert lang.render_patch("ops.yaml.j2", {}) == [
        {"op": "add", "path": "/metadata/labels/x", "value": "y"}]
