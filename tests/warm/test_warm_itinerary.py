"""The warm itinerary offline: it validates, its loop is declared, and its templates render
manifests that validate against the upstream schemas the simulator ships.

Manifests are rendered from the example plan's seed with the outputs a run records in round 1
(``round_outputs``), and once through ``smrun render``'s own path (placeholders for outputs).
"""
from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from statemachine.context import vm_context
from statemachine.copier import delta
from statemachine.expressions import evaluate
from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.parameters import compute_state_values, compute_values
from statemachine.plan import VM, Plan, load_plan
from statemachine.render import render_documents, render_plan, resolve_reads
from statemachine.sim.offline import seed_reads

from offline_render import render_actions
from upstream import shipped_validator, validate_all

from .harness import EXAMPLE_PLAN, REPO

WARM = REPO / "itineraries" / "warm.yaml"
CA = "-----BEGIN CERTIFICATE-----\nc2ltdWxhdGVkIGV4cG9ydCBDQQ==\n-----END CERTIFICATE-----\n"
TOKEN = base64.b64encode(b"t" * 48).decode()
CORE_GROUPS = ("v1", "batch/v1", "rbac.authorization.k8s.io/v1")


def itinerary() -> Itinerary:
    return load_itinerary(WARM)


def round_outputs(ctx: Mapping[str, Any], round_: int = 1) -> dict[str, Any]:
    """What a run has recorded when round ``round_`` copies (endpoints for every disk volume)."""
    vm = ctx["vm"]
    base = (f"https://virt-exportproxy-kubevirt.apps.source.sim.smrun.io/api/export.kubevirt.io/v1"
            f"/namespaces/{vm['namespace']}/virtualmachineexports/{vm['name']}-mig-{round_}/exports")
    volumes = [v["name"] for v in ctx["reads"]["sourceVM"]["spec"]["template"]["spec"]["volumes"]
               if "dataVolume" in v or "persistentVolumeClaim" in v]
    return {"sourceRunStrategy": "Always", "sourceStartStrategy": "",
            "round": round_, "finalRound": False, "backupType": "Incremental",
            "checkpointName": f"{vm['name']}-mig-{round_}-2026-11-26_00-00-00", "backupCert": CA,
            "backupVolumes": [{"volumeName": v, "mapEndpoint": f"{base}/{v}/map",
                               "dataEndpoint": f"{base}/{v}/data"} for v in volumes],
            "copyBytes": [1024] * len(volumes), "copyJob": [f"{vm['name']}-mig-{round_}-{v}" for v in volumes],
            "rounds": [], "lastRoundBytes": 1024}


def vm_ctx(plan: Plan, vm: VM, it: Itinerary, round_: int = 1) -> dict[str, Any]:
    source = seed_reads(plan)
    reads = resolve_reads(it.reads, vm_context(plan, vm), source, where="warm.yaml: ",
                          values_of=it)
    values = compute_values(it, vm_context(plan, vm, reads=reads))
    ctx = {**vm_context(plan, vm, reads=reads), "values": values}
    predicates = {name: bool(evaluate(expr, ctx)) for name, expr in it.predicates.items()}
    predicates.update(HasPreHook=False, HasPostHook=False)
    ctx = {**vm_context(plan, vm, reads=reads, predicates=predicates), "values": values}
    ctx["outputs"] = round_outputs(ctx, round_)
    return ctx


def render_vm(plan: Plan, vm: VM, round_: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """(state, manifest) of every apply/ensure action of every enabled state."""
    it = itinerary()
    ctx = vm_ctx(plan, vm, it, round_)

    def state_context(state: Any, ctx: dict[str, Any]) -> dict[str, Any]:
        # State reads (the token Secret): what the source cluster holds by then.
        ctx = {**ctx, "reads": {**ctx["reads"], **{
            r.name: {"data": {"token": TOKEN}} for r in state.reads}}}
        # The state's own values, over those reads (as the engine computes them).
        return {**ctx, "values": {**ctx["values"], **compute_state_values(state, ctx)}}

    out = [(state.name, doc) for state, _, doc in render_actions(it, ctx, state_context)]
    return out


@pytest.fixture(scope="module")
def validator() -> Any:
    from statemachine.sim.kinds import KINDS, KindRegistry
    registry = KindRegistry(tuple(KINDS))
    return registry, shipped_validator()


def _tracker_shape(manifest: dict[str, Any]) -> None:
    # The upstream swagger has no schema for VirtualMachineBackupTracker: check its shape.
    assert manifest["spec"]["source"] == {"apiGroup": "kubevirt.io", "kind": "VirtualMachine",
                                          "name": manifest["metadata"]["name"][:-len("-mig")]}


def _validate(manifests: list[dict[str, Any]], validator: Any) -> int:
    registry, check = validator
    return validate_all(manifests, registry, check, core_groups=CORE_GROUPS,
                        no_schema={"VirtualMachineBackupTracker": _tracker_shape})


def test_itinerary_and_example_plan_validate() -> None:
    done = subprocess.run([sys.executable, "-m", "statemachine", "validate", "--offline",
                           str(EXAMPLE_PLAN)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plan 'warm-demo' is valid" in done.stdout


def test_precopy_loop_is_declared_with_next() -> None:
    it = itinerary()
    names = [s.name for s in it.states]
    loop = names[names.index("NextRound"):names.index("PrecopyWait") + 1]
    assert loop == ["NextRound", "Backup", "PublishCA", "Copy", "FinishRound", "PrecopyWait"]
    finish = {n.to: n.when for n in it.state("FinishRound").next}
    assert set(finish) == {"HaltSource", "StopSource"}
    assert [n.to for n in it.state("PrecopyWait").next] == ["NextRound"]
    # The final round is the same loop, entered again after the source is quiet.
    assert [(n.to, n.when) for n in it.state("WaitForQuietSource").next] == [("NextRound", None)]


def test_round_counter_and_cutover_decision() -> None:
    it = itinerary()
    counter = it.state("NextRound").outputs["round"]
    assert evaluate(counter, {"outputs": {}}) == 0
    assert evaluate(counter, {"outputs": {"round": 3}}) == 4
    due = next(n.when for n in it.state("FinishRound").next if n.to == "StopSource")
    assert due is not None

    def decide(round_: int, bytes_: int | None, *, cutover: str | None = None,
               auto: int | None = None, limit: int | None = None) -> bool:
        return bool(evaluate(due, {
            "vm": {"cutover": cutover},
            "settings": {"autoCutoverDeltaBytes": auto, "maxPrecopyRounds": limit},
            "outputs": {"round": round_, "lastRoundBytes": bytes_}}))

    assert not decide(2, 5000)
    assert decide(2, 5000, cutover="2000-01-01T00:00:00Z")
    assert not decide(2, 5000, cutover="2999-01-01T00:00:00Z")
    assert decide(2, 900, auto=1000) and not decide(2, 1100, auto=1000)
    assert not decide(0, 900, auto=1000)       # round 0 is the full copy, never "small"
    assert not decide(2, None, auto=1000)      # bytes unknown: no early cutover
    assert decide(4, 5000, limit=5) and not decide(3, 5000, limit=5)


def test_every_rendered_manifest_validates_upstream(validator: Any) -> None:
    plan = load_plan(EXAMPLE_PLAN)
    manifests = [doc for vm in plan.vms for _, doc in render_vm(plan, vm)]
    kinds = sorted({m["kind"] for m in manifests})
    assert kinds == ["ConfigMap", "Job", "Namespace", "PersistentVolumeClaim", "Secret",
                     "VirtualMachine", "VirtualMachineBackup", "VirtualMachineBackupTracker"]
    # 2 backups + 2 VMs (the trackers have no upstream schema; checked by shape)
    assert _validate(manifests, validator) == 4


def test_smrun_render_preview_validates_upstream(validator: Any) -> None:
    plan = load_plan(EXAMPLE_PLAN)
    rendered = [r for r in render_plan(plan, itinerary(), seed_reads(plan))
                if r.action in ("apply", "ensure")]
    assert {r.state for r in rendered} >= {"CreateTracker", "Backup", "Copy", "CreateTargetVM"}
    # Outputs are placeholders here, so only the kinds whose fields do not need them are checked.
    stable = [r.manifest for r in rendered if r.manifest["kind"] in ("VirtualMachineBackupTracker",)]
    assert _validate(stable, validator) == 0 and len(stable) == 2


def test_copier_configmap_carries_the_program_verbatim() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    docs = [doc for state, doc in render_vm(plan, plan.vms[0]) if state == "ShipCopier"]
    assert len(docs) == 1
    assert docs[0]["data"]["delta.py"] == Path(delta.__file__).read_text()


def test_round_zero_is_full_later_rounds_incremental_from_the_tracker() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    for round_, full in ((0, True), (3, False)):
        backup = next(doc for state, doc in render_vm(plan, plan.vms[0], round_) if state == "Backup")
        assert backup["metadata"]["name"] == f"ledger-1-mig-{round_}"
        assert backup["spec"]["forceFullBackup"] is full
        assert backup["spec"]["mode"] == "Pull"
        assert backup["spec"]["source"] == {"apiGroup": "backup.kubevirt.io",
                                            "kind": "VirtualMachineBackupTracker", "name": "ledger-1-mig"}
        assert backup["spec"]["pvcName"] == "ledger-1-mig-scratch"
        assert backup["spec"]["tokenSecretRef"] == "ledger-1-mig-token"
        assert backup["spec"]["ttlDuration"] == "12h"


def test_copy_jobs_follow_the_volume_mode_and_carry_token_and_ca() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    jobs = {doc["metadata"]["name"]: doc for state, doc in render_vm(plan, plan.vms[0]) if state == "Copy"}
    assert set(jobs) == {"ledger-1-mig-1-root", "ledger-1-mig-1-data"}
    for name, device in (("ledger-1-mig-1-root", True), ("ledger-1-mig-1-data", False)):
        pod = jobs[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        volume = name.rsplit("-", 1)[1]
        assert env["MAP_URL"].endswith(f"/virtualmachineexports/ledger-1-mig-1/exports/{volume}/map")
        assert env["DATA_URL"].endswith(f"/exports/{volume}/data")
        assert env["TOKEN"] == {"secretKeyRef": {"name": "ledger-1-mig-token", "key": "token"}}
        assert env["CA_FILE"] == "/ca/ca.pem" and env["BACKUP_TYPE"] == "Incremental"
        assert container["command"] == ["python", "/copier/delta.py"]
        if device:
            assert env["TARGET"] == "/dev/target"
            assert container["volumeDevices"] == [{"name": "target", "devicePath": "/dev/target"}]
        else:
            assert env["TARGET"] == "/target/disk.img"
            assert {"name": "target", "mountPath": "/target"} in container["volumeMounts"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v]
        assert claims == [f"ledger-1-{volume}"]
        assert pod["securityContext"]["runAsUser"] == 107


def test_source_token_is_random_and_base64() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    tokens = [next(doc for state, doc in render_vm(plan, plan.vms[0]) if state == "CreateSourceToken")
              ["data"]["token"] for _ in range(2)]
    assert tokens[0] != tokens[1]
    assert all(len(base64.b64decode(t)) == 48 for t in tokens)


def test_target_vm_uses_the_copied_claims_and_the_stored_run_strategy() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    target = next(doc for state, doc in render_vm(plan, plan.vms[0]) if state == "CreateTargetVM")
    assert target["spec"]["runStrategy"] == "Always"
    assert target["spec"]["template"]["spec"]["volumes"] == [
        {"name": "root", "persistentVolumeClaim": {"claimName": "ledger-1-root"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "ledger-1-data"}}]
    assert "startStrategy" not in target["spec"]["template"]["spec"]
    assert "dataVolumeTemplates" not in target["spec"]


def test_pause_method_renders_the_pause_job_instead_of_a_paused_restart() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    it = itinerary()
    ctx = vm_ctx(plan, plan.vms[0], it)
    assert ctx["predicates"] == {"RestartPaused": True, "PauseMethod": False,
                                 "HasPreHook": False, "HasPostHook": False}
    ctx["settings"] = {**ctx["settings"], "cutoverMethod": "pause"}
    assert evaluate(it.predicates["PauseMethod"], ctx) and not evaluate(it.predicates["RestartPaused"], ctx)
    docs = render_documents("warm/pause-job.yaml.j2", ctx)
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding", "Job"]
    assert docs[1]["rules"] == [{"apiGroups": ["subresources.kubevirt.io"],
                                 "resources": ["virtualmachineinstances/pause"],
                                 "resourceNames": ["ledger-1"], "verbs": ["update"]}]
    env = docs[3]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "VMI_PATH", "value": "/apis/subresources.kubevirt.io/v1/namespaces/ledger/"
                                                 "virtualmachineinstances/ledger-1/pause"}]


def test_target_token_is_copied_from_the_source_secret_by_a_state_read() -> None:
    it = itinerary()
    [read] = it.state("CreateTargetToken").reads
    assert (read.name, read.cluster, read.object.kind) == ("sourceToken", "source", "Secret")
    plan = load_plan(EXAMPLE_PLAN)
    secret = next(doc for state, doc in render_vm(plan, plan.vms[0]) if state == "CreateTargetToken")
    assert secret["data"] == {"token": TOKEN}
    # No state keeps the token in an output (outputs are journaled and shown by smrun status).
    assert not any("token" in name.lower() for s in it.states for name in s.outputs)
