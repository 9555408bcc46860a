"""State-level ``reads``: resolved at every entry (and for undo), merged over the VM's reads,
waited for while missing, never journaled — against the in-memory fake clusters."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from statemachine.engine.journal import Journal
from statemachine.itinerary import Itinerary
from statemachine.k8s import ObjectRef

from .fakes import JOB_TEMPLATE, FakeCluster
from .flows import engine, itinerary, plan

SECRET_VALUE = "c3VwZXItc2VjcmV0LXZhbHVl"  # what must never reach the journal

TEMPLATES = {
    "copy.yaml": """apiVersion: v1
kind: Secret
metadata: {name: "{{ vm.name }}-copy", namespace: "{{ vm.namespace }}"}
data: {token: "{{ reads.token.data.token if reads.token else '' }}", vm: "{{ reads.vmName }}"}
""",
    "job.yaml": JOB_TEMPLATE,
    "late.yaml": """apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-late", namespace: "{{ vm.namespace }}"}
data: {sawToken: "{{ reads.token is defined }}"}
""",
}

def token_secret(vm: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"{vm}-token", "namespace": "shop"}, "data": {"token": SECRET_VALUE}}


def make_flow(tmp_path: Path, *, optional: bool = False, timeout: int | None = None,
              fail_after: bool = False) -> Itinerary:
    run_job = """
  - name: RunJob
    actions: [{apply: job.yaml}]
    readiness: {ready: condition=Complete, failed: condition=Failed}
""" if fail_after else ""
    limit = f"\n    timeout: {timeout}" if timeout is not None else ""
    return itinerary(tmp_path / "reads", f"""
reads:
  - name: vmName
    cluster: source
    optional: true
    object: {{apiVersion: v1, kind: ConfigMap, name: "{{{{ vm.name }}}}-late", namespace: "{{{{ vm.namespace }}}}"}}
states:
  - name: Late
    actions: [{{apply: late.yaml}}]
  - name: CopyToken
    actions: [{{apply: copy.yaml}}]
    reads:
      - name: token
        cluster: source
        optional: {str(optional).lower()}
        object: {{apiVersion: v1, kind: Secret, name: "{{{{ vm.name }}}}-token", namespace: "{{{{ vm.namespace }}}}", cluster: source}}
    outputs: {{copied: object.metadata.name}}{limit}
    undo:
      - delete: created
      # Undo sees the state's reads again: it records what it read on the VM's ConfigMap.
      - patch:
          object: {{apiVersion: v1, kind: ConfigMap, name: "{{{{ vm.name }}}}-late", namespace: "{{{{ vm.namespace }}}}"}}
          patch: {{data: {{undoSaw: "{{{{ reads.token.metadata.name }}}}"}}}}
        when: "reads.token is not none"
{run_job.strip(chr(10))}
  - name: Completed
""", TEMPLATES, name="reads")


def run(tmp_path: Path, flow: Itinerary, cluster: FakeCluster, vm: str = "web-1",
        events: list[dict[str, Any]] | None = None) -> Any:
    return engine(tmp_path, plan("p", [vm], step_timeout=5), flow, cluster, events=events,
                  resync=0.1).run()


def journal_text(tmp_path: Path) -> str:
    return (tmp_path / "p" / "journal.jsonl").read_text(encoding="utf-8")


def test_state_read_is_visible_to_actions_and_never_journaled(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    cluster.create(token_secret("web-1"))
    result = run(tmp_path, make_flow(tmp_path), cluster)
    assert result.vms[0].phase == "Completed", result.vms[0].message
    copy = cluster.get(ObjectRef("v1", "Secret", "shop", "web-1-copy"))
    assert copy is not None and copy["data"]["token"] == SECRET_VALUE
    # The VM-level read (absent, optional) is still visible next to the state's own read.
    assert copy["data"]["vm"] == "None"
    assert SECRET_VALUE not in journal_text(tmp_path)
    outputs = [json.loads(line) for line in journal_text(tmp_path).splitlines()
               if '"type":"outputs"' in line]
    assert outputs[0]["values"] == {"copied": "web-1-copy"}


def test_state_reads_are_not_visible_to_other_states(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    cluster.create(token_secret("web-1"))
    assert run(tmp_path, make_flow(tmp_path), cluster).vms[0].phase == "Completed"
    late = cluster.get(ObjectRef("v1", "ConfigMap", "shop", "web-1-late"))
    assert late is not None and late["data"]["sawToken"] == "False"


def test_missing_read_is_waited_for_until_it_appears(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    timer = threading.Timer(0.4, cluster.create, (token_secret("web-1"),))
    timer.start()
    events: list[dict[str, Any]] = []
    try:
        result = run(tmp_path, make_flow(tmp_path), cluster, events=events)
    finally:
        timer.cancel()
    assert result.vms[0].phase == "Completed", result.vms[0].message
    waits = [e for e in events if e["event"] == "state_waiting" and e["state"] == "CopyToken"]
    assert waits and waits[0]["waiting_for"] == "Secret shop/web-1-token (read token)"


def test_missing_read_fails_the_state_at_its_timeout(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    result = run(tmp_path, make_flow(tmp_path, timeout=1), cluster)
    vm = result.vms[0]
    assert vm.phase == "Failed"
    assert vm.message.startswith("CopyToken: timed out after 1s: read token: "
                                 "Secret shop/web-1-token not found on the source cluster")
    assert cluster.get(ObjectRef("v1", "Secret", "shop", "web-1-copy")) is None


def test_missing_optional_read_is_none_without_waiting(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    result = run(tmp_path, make_flow(tmp_path, optional=True, timeout=1), cluster)
    assert result.vms[0].phase == "Completed", result.vms[0].message
    copy = cluster.get(ObjectRef("v1", "Secret", "shop", "web-1-copy"))
    assert copy is not None and copy["data"]["token"] == ""


def test_undo_sees_the_state_reads_again(tmp_path: Path) -> None:
    cluster = FakeCluster("c")
    cluster.create(token_secret("bad-1"))
    result = run(tmp_path, make_flow(tmp_path, fail_after=True), cluster, vm="bad-1")
    assert result.vms[0].phase == "Failed"
    late = cluster.get(ObjectRef("v1", "ConfigMap", "shop", "bad-1-late"))
    assert late is not None and late["data"]["undoSaw"] == "bad-1-token"
    assert cluster.get(ObjectRef("v1", "Secret", "shop", "bad-1-copy")) is None  # delete: created
    assert SECRET_VALUE not in journal_text(tmp_path)


def test_resume_into_the_state_reads_it_again(tmp_path: Path) -> None:
    """A journal that stops inside CopyToken (as after a kill -9): the rerun re-reads the token."""
    cluster = FakeCluster("c")
    cluster.create(token_secret("web-1"))
    directory = tmp_path / "p"
    directory.mkdir()
    lines = [{"ts": "2026-01-01T00:00:00.000Z", "type": "run_started", "run": "r1", "vms": ["shop/web-1"]},
             {"ts": "2026-01-01T00:00:00.000Z", "type": "vm_started", "vm": "shop/web-1",
              "predicates": {}, "reads": {"vmName": None}},
             {"ts": "2026-01-01T00:00:00.000Z", "type": "state_entered", "vm": "shop/web-1",
              "state": "Late"},
             {"ts": "2026-01-01T00:00:00.000Z", "type": "state_completed", "vm": "shop/web-1",
              "state": "Late"},
             {"ts": "2026-01-01T00:00:00.000Z", "type": "state_entered", "vm": "shop/web-1",
              "state": "CopyToken"}]
    (directory / "journal.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    gets_before = cluster.calls.count(("get", "Secret"))
    result = run(tmp_path, make_flow(tmp_path), cluster)
    assert result.vms[0].phase == "Completed", result.vms[0].message
    assert cluster.calls.count(("get", "Secret")) > gets_before
    copy = cluster.get(ObjectRef("v1", "Secret", "shop", "web-1-copy"))
    assert copy is not None and copy["data"]["token"] == SECRET_VALUE
    assert SECRET_VALUE not in journal_text(tmp_path)


def test_journal_directory_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from statemachine.engine.journal import request_cancel

    old = os.umask(0o000)
    try:
        journal = Journal(tmp_path / "state" / "p")
        journal.lock()
        journal.append("run_started", run="r", vms=[])
        request_cancel(journal.dir, ["shop/web-1"])
        journal.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.dir.stat().st_mode) == 0o700
    for name in ("journal.jsonl", "lock", "cancel.json"):
        assert stat.S_IMODE((journal.dir / name).stat().st_mode) == 0o600, name
