"""``smrun diff PLAN`` and ``smrun validate --server-dry-run PLAN`` against simulated clusters
reached through a kubeconfig, as real ones would be (issue 15 item 6): which states are previewed,
the kubectl-diff-style output with Secrets masked and server fields left out, the exit codes, the
dry-run refusals one line each, and that nothing is written (the simulator's request log)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.cli import main
from tests.language.test_previews_and_copies import EXAMPLE, _against

FLOW = """\
apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: preview, description: states a preview covers and one it cannot}
spec:
  migrationType: preview
  templates: templates
  reads:
    - {name: sourceVM, cluster: source, object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: "{{ vm.name }}", namespace: "{{ vm.namespace }}"}}
  states:
    - name: Shared
      cluster: target
      actions:
        - ensure: shared.yaml.j2
    - name: Label
      cluster: source
      actions:
        - patch:
            object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: "{{ vm.name }}", namespace: "{{ vm.namespace }}"}
            type: merge
            patch: {metadata: {labels: {team: "{{ params.team }}"}}}
    - name: Credentials
      cluster: target
      actions:
        - apply: secret.yaml.j2
    - name: Standby
      cluster: target
      actions:
        - apply: vm.yaml.j2
      outputs:
        uid: "object.metadata.uid"
    - name: Record
      cluster: target
      actions:
        - apply: record.yaml.j2
    - name: Completed
  parameters:
    - {name: team, schema: {type: string}, default: shop}
    - {name: password, schema: {type: string}, default: hunter2}
    - {name: strategy, schema: {type: string}, default: Halted}
"""

TEMPLATES = {
    "shared.yaml.j2": "apiVersion: v1\nkind: ConfigMap\n"
                      "metadata: {name: shared, namespace: shop}\ndata: {mode: preview}\n",
    "secret.yaml.j2": "apiVersion: v1\nkind: Secret\n"
                      "metadata: {name: '{{ vm.name }}-creds', namespace: shop}\n"
                      "type: Opaque\nstringData: {password: '{{ params.password }}'}\n",
    "vm.yaml.j2": "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\n"
                  "metadata: {name: '{{ vm.name }}', namespace: shop}\n"
                  "spec:\n  runStrategy: '{{ params.strategy }}'\n"
                  "  template: {spec: {domain: {devices: {}, memory: {guest: 1Gi}}}}\n",
    "record.yaml.j2": "apiVersion: v1\nkind: ConfigMap\n"
                      "metadata: {name: '{{ vm.name }}-record', namespace: shop}\n"
                      "data: {uid: '{{ outputs.uid }}'}\n",
}

SEED = Path(__file__).resolve().parents[1] / "data" / "plans" / "valid" / "seed.yaml"


def _shared_on_target(seed: Path, out: Path, **data: str) -> Path:
    doc = yaml.safe_load(seed.read_text())
    doc["target"].append({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "shared", "namespace": "shop"},
                          "data": data or {"mode": "preview"}})
    out.write_text(yaml.safe_dump(doc))
    return out


def _flow_plan(folder: Path, kubeconfig: Path, *, flow: str = FLOW,
               templates: dict[str, str] | None = None, **params: str) -> Path:
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    for name, text in (templates or TEMPLATES).items():
        (folder / "templates" / name).write_text(text)
    (folder / "flow.yaml").write_text(flow)
    plan = {"apiVersion": "smrun.io/v1alpha1", "kind": "Plan", "metadata": {"name": "preview"},
            "spec": {"itinerary": "./flow.yaml", "parameters": params,
                     "source": {"kubeconfig": str(kubeconfig), "context": "source"},
                     "target": {"kubeconfig": str(kubeconfig), "context": "target"},
                     "vms": [{"name": "web-1", "namespace": "shop"}]}}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _methods(log: Path) -> list[str]:
    return [json.loads(line)["method"] for line in log.read_text().splitlines() if line.strip()]


@pytest.fixture
def flow(tmp_path: Path, make_sim: Any) -> tuple[Any, Path, Path]:
    log = tmp_path / "requests.jsonl"
    sim = make_sim(seed=_shared_on_target(SEED, tmp_path / "seed.yaml"), request_log=log)
    return sim, _flow_plan(tmp_path / "flow", sim.kubeconfig_path), log


# -- smrun diff ---------------------------------------------------------------------------------

def test_diff_of_the_live_example_shows_new_objects_and_writes_nothing(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "requests.jsonl"
    sim = make_sim(seed=EXAMPLE.parent / "seed.yaml", request_log=log)
    plan = _against(EXAMPLE, sim.kubeconfig_path, tmp_path / "plan.yaml")
    assert main(["diff", str(plan), "--vm", "web-1"]) == 1
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    name = "cdi.kubevirt.io.v1beta1.DataVolume.shop.web-1-root"
    assert f"--- live/target/{name}\n+++ merged/target/{name}\n@@ -0,0 +1," in out
    block = out.split(f"+++ merged/target/{name}\n", 1)[1].split("\n# ", 1)[0]
    assert all(line.startswith(("+", "@@")) for line in block.splitlines())  # new: all "+"
    assert "+    smrun.io/vm: web-1\n" in block  # labelled as the engine would send it
    # The CA exchange of setup is a change of live ConfigMaps: a real -/+ diff.
    assert "--- live/target/v1.ConfigMap.kubevirt.kubevirt-external-ca" in out
    assert "-  ca-bundle: ''\n+  ca-bundle: |\n" in out
    for server_field in ("resourceVersion", "managedFields", "creationTimestamp", " uid:"):
        assert server_field not in out, server_field
    assert "VirtualMachineInstanceMigration" not in out  # after the first states
    assert ("shop/web-1: preview stops before SetOwnerReferences: it uses outputs.targetVMUID"
            in err)
    assert set(_methods(log)) == {"GET"}
    assert sim.store("target").try_get("DataVolume", "shop", "web-1-root") is None


def test_diff_stops_before_the_state_that_needs_an_output(
        flow: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sim, plan, log = flow
    assert main(["diff", str(plan)]) == 1
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    # Shared: the ConfigMap exists with the same content: no diff.
    assert "ConfigMap.shop.shared" not in out
    # Label: a merge patch of the live source VM: only the new label shows.
    vm = "live/source/kubevirt.io.v1.VirtualMachine.shop.web-1"
    assert f"--- {vm}\n" in out
    section = out.split(f"--- {vm}\n", 1)[1].split("\n# ", 1)[0]
    assert [line for line in section.splitlines() if line[:1] in "+-" and line[:3] not in
            ("+++", "---")] == ["+  labels:", "+    team: shop"]
    # Credentials and Standby: new objects on the target.
    assert "+++ merged/target/v1.Secret.shop.web-1-creds" in out
    assert "+++ merged/target/kubevirt.io.v1.VirtualMachine.shop.web-1" in out
    # Record uses outputs.uid of Standby: not previewed, and said why.
    assert "web-1-record" not in out
    assert ("shop/web-1: preview stops before Record: it uses outputs.uid, which an earlier "
            "state records during the run") in err
    assert set(_methods(log)) == {"GET"}


def test_diff_masks_secrets_as_kubectl_does(flow: tuple[Any, Path, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    sim, plan, _ = flow
    assert main(["diff", str(plan), "--state", "Credentials"]) == 1
    out = capsys.readouterr().out
    assert "hunter2" not in out and "+  password: '***'" in out
    # An existing Secret of someone else is not diffed (the run would refuse it), and a patch
    # of an existing Secret shows only that a value changed.
    sim.store("target").create("Secret", {"metadata": {"name": "web-1-creds", "namespace": "shop"},
                                          "stringData": {"password": "old-secret"}})
    assert main(["diff", str(plan), "--state", "Credentials"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "old-secret" not in captured.err
    assert ("shop/web-1: Credentials: Secret shop/web-1-creds on target exists and was not "
            "created by this plan for this VM: the run would refuse to overwrite it"
            in captured.err)


def test_masked_secret_change_shows_before_and_after() -> None:
    from statemachine.diff.unified import object_diff
    from statemachine.k8s import ObjectRef

    ref = ObjectRef("v1", "Secret", "shop", "s")
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "uid": "u1"},
            "data": {"same": "c2FtZQ==", "changed": "b2xk", "gone": "eA=="}}
    merged = {**live, "data": {"same": "c2FtZQ==", "changed": "bmV3", "added": "eQ=="}}
    text = object_diff("target", ref, live, merged)
    assert "-  changed: '*** (before)'\n" in text and "+  changed: '*** (after)'\n" in text
    assert "+  added: '***'" in text and "-  gone: '***'" in text and "  same: '***'" in text
    for value in ("c2FtZQ==", "b2xk", "bmV3", "eA==", "eQ=="):
        assert value not in text
    assert object_diff("target", ref, live, {**live, "metadata": {"name": "s", "uid": "u2"}}) == ""


def test_diff_is_0_when_nothing_would_change(
        flow: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sim, plan, log = flow
    vm = sim.store("source").get("VirtualMachine", "shop", "web-1")
    sim.store("source").mutate("VirtualMachine", "shop", "web-1",
                               lambda o: o["metadata"].setdefault("labels", {}).update(team="shop"))
    assert vm["metadata"]["resourceVersion"] != sim.store("source").get(
        "VirtualMachine", "shop", "web-1")["metadata"]["resourceVersion"]
    for state in ("Shared", "Label"):
        assert main(["diff", str(plan), "--state", state]) == 0
        assert capsys.readouterr().out == ""


def test_diff_state_option_refuses_what_cannot_be_previewed(
        flow: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, plan, _ = flow
    assert main(["diff", str(plan), "--state", "Record"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["smrun diff: --state Record cannot be previewed: shop/web-1: it uses "
                   "outputs.uid, which an earlier state records during the run"]
    assert main(["diff", str(plan), "--state", "Nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--state Nope: no such state in itinerary 'preview'" in err[0]


def _unreachable(tmp_path: Path) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "source",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}}
                     for n in ("source", "target")]}))
    return _against(EXAMPLE, kubeconfig, tmp_path / "plan.yaml")


@pytest.mark.parametrize("command", [["diff"], ["validate", "--server-dry-run"]])
def test_unreachable_clusters_and_a_missing_plan_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    assert main([*command, str(_unreachable(tmp_path))]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    # The first cluster the command reaches for is the source; its line is smrun's own words.
    assert err == ["cluster source: cannot reach the API server at https://127.0.0.1:1: "
                   "connection refused"], err
    assert main([*command, str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.yaml" in err[0], err


# -- smrun validate --server-dry-run ------------------------------------------------------------

def test_server_dry_run_of_the_live_example_is_accepted_and_stores_nothing(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "requests.jsonl"
    sim = make_sim(seed=EXAMPLE.parent / "seed.yaml", request_log=log)
    plan = _against(EXAMPLE, sim.kubeconfig_path, tmp_path / "plan.yaml")
    ca = sim.store("target").get("ConfigMap", "kubevirt", "kubevirt-external-ca")
    assert main(["validate", "--server-dry-run", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "server dry run: 15 writes of the first states accepted by the clusters" in out
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    writes = [r for r in records if r["method"] != "GET"
              and not r["path"].startswith("/apis/authorization.k8s.io/")]  # preflight's reviews
    # The first states' writes reached the servers, every one of them as a dry run.
    assert {r["method"] for r in writes} == {"POST", "PATCH"} and len(writes) == 15
    assert all(r["dryRun"] for r in writes), [r for r in writes if not r["dryRun"]]
    target = sim.store("target")
    assert target.try_get("DataVolume", "shop", "web-1-root") is None
    assert target.try_get("VirtualMachine", "shop", "web-1") is None
    assert target.get("ConfigMap", "kubevirt", "kubevirt-external-ca") == ca


def test_server_dry_run_refusals_are_one_line_each(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sim = make_sim(seed=_shared_on_target(SEED, tmp_path / "seed.yaml"))
    # A run strategy KubeVirt's schema refuses, and a label value the apiserver refuses.
    plan = _flow_plan(tmp_path / "flow", sim.kubeconfig_path, strategy="Sometimes",
                      team="not a label value")
    assert main(["validate", "--server-dry-run", str(plan)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("server dry run: 2 of 3 writes of the first states refused; nothing was "
                       "applied")
    refusals = err[:-1]
    assert len(refusals) == 2, refusals
    assert refusals[0].startswith("shop/web-1: Label: VirtualMachine shop/web-1 on source: ")
    assert ('VirtualMachine.kubevirt.io "web-1" is invalid: metadata.labels: Invalid value: '
            '"not a label value"') in refusals[0]
    assert refusals[1].startswith("shop/web-1: Standby: VirtualMachine shop/web-1 on target: ")
    assert refusals[1].endswith('admission webhook "virtualmachine-validator.kubevirt.io" denied '
                                'the request: Invalid RunStrategy (Sometimes)')
    assert sim.store("target").try_get("VirtualMachine", "shop", "web-1") is None
    assert "team" not in (sim.store("source").get("VirtualMachine", "shop", "web-1")
                          ["metadata"].get("labels") or {})


def test_server_dry_run_refuses_someone_elses_object_like_the_run(
        flow: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    sim, plan, _ = flow
    sim.store("target").create("Secret", {"metadata": {"name": "web-1-creds", "namespace": "shop"},
                                          "stringData": {"password": "x"}})
    assert main(["validate", "--server-dry-run", str(plan)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert ("shop/web-1: Credentials: Secret shop/web-1-creds on target: exists and was not "
            "created by this plan for this VM; the run would refuse to overwrite it") in err


def test_offline_and_server_dry_run_exclude_each_other(
        flow: tuple[Any, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, plan, _ = flow
    assert main(["validate", "--offline", "--server-dry-run", str(plan)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "smrun validate: --offline and --server-dry-run exclude each other"


NEW_NAMESPACE = """\
apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: fresh, description: a namespace then an object in it}
spec:
  migrationType: fresh
  templates: templates
  states:
    - name: Started
      cluster: target
      actions:
        - ensure: namespace.yaml.j2
    - name: Config
      cluster: target
      actions:
        - apply: config.yaml.j2
    - name: Completed
"""


def test_an_object_in_a_namespace_an_earlier_state_creates(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "requests.jsonl"
    sim = make_sim(seed=SEED, request_log=log)
    plan = _flow_plan(tmp_path / "flow", sim.kubeconfig_path, flow=NEW_NAMESPACE, templates={
        "namespace.yaml.j2": "apiVersion: v1\nkind: Namespace\nmetadata: {name: fresh}\n",
        "config.yaml.j2": "apiVersion: v1\nkind: ConfigMap\n"
                          "metadata: {name: conf, namespace: fresh}\ndata: {a: b}\n"})
    # The diff shows both as new: the preview does not stop at objects of the preview itself.
    assert main(["diff", str(plan)]) == 1
    out = capsys.readouterr().out
    assert "+++ merged/target/v1.Namespace.fresh\n" in out
    assert "+++ merged/target/v1.ConfigMap.fresh.conf\n" in out
    # The dry run sends the namespace, not the ConfigMap the server would answer 404 for.
    assert main(["validate", "--server-dry-run", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "server dry run: 1 writes of the first states accepted" in out
    assert "1 not sent" in out
    assert _methods(log).count("POST") >= 1
    assert sim.store("target").try_get("Namespace", None, "fresh") is None


@pytest.mark.parametrize("command", [["diff"], ["validate", "--server-dry-run"]])
def test_a_kind_the_cluster_does_not_serve_is_one_line_exit_3(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str],
        command: list[str]) -> None:
    sim = make_sim(seed=SEED)
    plan = _flow_plan(tmp_path / "flow", sim.kubeconfig_path, flow=NEW_NAMESPACE, templates={
        "namespace.yaml.j2": "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
        "config.yaml.j2": "apiVersion: v1\nkind: ConfigMap\n"
                          "metadata: {name: conf, namespace: shop}\ndata: {a: b}\n"})
    if command == ["diff"]:
        assert main([*command, str(plan)]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["Widget (example.com/v1) is not served by cluster target"]
    else:  # preflight already refuses it, before any dry run
        assert main([*command, str(plan)]) == 3
        assert "Widget" in capsys.readouterr().err


def test_a_failing_patch_of_a_secret_never_quotes_its_values() -> None:
    from statemachine.diff.changes import changes
    from statemachine.plan import load_plan
    from statemachine.render import RenderedManifest
    from tests.engine.fakes import FakeCluster

    plan = load_plan(EXAMPLE)
    target = FakeCluster("target")
    target.objects[("Secret", "shop", "s")] = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
        "data": {"token": "c2VjcmV0LXZhbHVl"}}
    ref = {"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "s"}
    patch = [{"op": "test", "path": "/data/token", "value": "d3Jvbmc="}]
    found = changes(plan, [RenderedManifest("Rotate", "target", "patch",
                                            {"object": ref, "type": "json", "patch": patch},
                                            vm="shop/web-1")], {"target": target})
    assert [c.problems for c in found] == [["Secret shop/s on target: the patch does not apply"]]
    assert target.calls == [("get", "Secret")]  # read only
