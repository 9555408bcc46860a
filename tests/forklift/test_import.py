"""``smrun import forklift FILE... -o PLAN``: each Forklift object set of tests/data/forklift is
imported, the result passes ``smrun validate --offline``, and the mapped fields, side files and
warnings are the ones the mapping (docs/forklift.md) promises."""
from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.forklift.conftest import DATA, load, load_all, run_import, validate_offline

SETS = {
    "live": ["live.yaml"],
    "cold": ["cold.yaml"],
    "warm": ["warm.yaml"],
    "multus": ["multus.yaml"],
    "hooks": ["hooks.yaml"],
    "target-namespace": ["target-namespace.yaml"],
    "transfer-network": ["transfer-network.yaml"],
    "vm-by-id": ["vm-by-id.yaml", "vm-inventory.yaml"],
}
TOKENS = ("sha256~eastToken0123456789abcdefFAKEfortests", "sha256~coldSourceToken-abcdef0123456789",
          "sha256~coldTargetToken-9876543210fedcba", "sha256~warmLedgerToken-00112233445566778899",
          "sha256~labToken-multus-4455667788", "sha256~hooksEastToken-123123123",
          "sha256~staging-token-for-tests", "sha256~westTokenTransfer-5566", "sha256~byIdEastToken-778899")


def _import(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str,
            *extra: str) -> tuple[dict[str, Any], str, str]:
    out = tmp_path / "out" / f"{name}.yaml"
    code, stdout, stderr = run_import(capsys, *(str(DATA / f) for f in SETS[name]), "-o", str(out),
                                      "--host-context", "west", *extra)
    assert code == 0, stderr
    plan: dict[str, Any] = load(out)
    return plan, stdout, stderr


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_set_imports_to_a_plan_that_validates_offline(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, stdout, stderr = _import(capsys, tmp_path, name)
    assert plan["apiVersion"] == "smrun.io/v1alpha1" and plan["kind"] == "Plan"
    code, out, err = validate_offline(capsys, tmp_path / "out" / f"{name}.yaml")
    assert code == 0, err
    assert "is valid" in out
    # Credentials go into 0600 files only: never to the terminal.
    for token in TOKENS:
        assert token not in stdout and token not in stderr


def test_live_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, stdout, stderr = _import(capsys, tmp_path, "live")
    spec = plan["spec"]
    assert plan["metadata"] == {"name": "shop-live",
                                "description": "Move the shop VMs off the east cluster without downtime"}
    assert spec["type"] == "live"
    assert spec["targetNamespace"] == "shop"
    # The remote source: a kubeconfig next to the plan, mode 0600; the host destination: the context.
    assert spec["source"] == {"kubeconfig": "./live-east.kubeconfig", "context": "east"}
    assert spec["target"] == {"context": "west"}
    kubeconfig = tmp_path / "out" / "live-east.kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    config = load(kubeconfig)
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://api.east.example.com:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode().startswith(
        "-----BEGIN CERTIFICATE-----\nMIIBfakeEASTcaFORtests")
    assert config["users"][0]["user"] == {"token": TOKENS[0]}
    assert config["current-context"] == "east"
    assert spec["map"] == {
        "storage": [
            {"source": "shared", "destination": {"storageClass": "fast-rwx", "accessMode": "ReadWriteMany",
                                                 "volumeMode": "Block"}},
            {"source": "bulk", "destination": {"storageClass": "fast-rwx", "accessMode": "ReadWriteMany",
                                               "volumeMode": "Filesystem"}}],
        "network": [
            {"source": {"type": "pod"}, "destination": {"type": "pod"}},
            {"source": {"type": "multus", "name": "shop/backend"},
             "destination": {"type": "multus", "name": "shop/backend"}}]}
    assert spec["hooks"] == [{"name": "quiesce-db", "image": "quay.io/konveyor/hook-runner",
                              "playbook": "./live-hook-quiesce-db.yml"}]
    playbook = (tmp_path / "out" / "live-hook-quiesce-db.yml").read_text()
    assert yaml.safe_load(playbook)[0]["name"] == "Quiesce the database before the move"
    assert spec["vms"] == [{"name": "web-1", "namespace": "shop"}, {"name": "web-2", "namespace": "shop"},
                           {"name": "db-1", "namespace": "shop",
                            "hooks": [{"step": "PreHook", "hook": "quiesce-db"}]}]
    # The API server's defaults are named, each with the line it is on; nothing else is reported.
    lines = stderr.splitlines()
    defaults = ("migrateSharedDisks", "preserveStaticIPs", "runPreflightInspection", "skipGuestConversion",
                "useCompatibilityMode")
    assert len(lines) == len(defaults), stderr
    for field, line in zip(defaults, lines):
        assert line.startswith(f"{DATA / 'live.yaml'}:")
        assert f"Plan openshift-mtv/shop-live: spec.{field}: " in line
        assert line.endswith("(the CRD's default): no smrun equivalent; ignored")
    assert "live-east.kubeconfig (credentials, mode 0600)" in stdout


def test_cold_set_uses_the_legacy_flag_and_two_remote_providers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, stderr = _import(capsys, tmp_path, "cold")
    spec = plan["spec"]
    assert spec["type"] == "cold"  # no `type`, `warm: false`
    assert spec["source"] == {"kubeconfig": "./cold-south.kubeconfig", "context": "south"}
    assert spec["target"] == {"kubeconfig": "./cold-north.kubeconfig", "context": "north"}
    south = load(tmp_path / "out" / "cold-south.kubeconfig")["clusters"][0]["cluster"]
    assert "MIIBfakeSOUTHcaFORtests" in base64.b64decode(south["certificate-authority-data"]).decode()
    north = load(tmp_path / "out" / "cold-north.kubeconfig")["clusters"][0]["cluster"]
    assert north == {"server": "https://api.north.example.net:6443", "insecure-skip-tls-verify": True}
    for name in ("cold-south.kubeconfig", "cold-north.kubeconfig"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600
    assert spec["map"]["storage"][1] == {"source": "bulk", "destination": {"storageClass": "fast",
                                                                           "volumeMode": "Filesystem"}}
    # targetPowerState: auto ("as the source") is what smrun does: no warning; nothing else to say.
    assert stderr == ""


def test_type_wins_over_the_legacy_warm_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = load_all(DATA / "cold.yaml")
    plan = next(d for d in docs if d["kind"] == "Plan")
    plan["spec"].update(type="live", warm=True)
    source = tmp_path / "fk.yaml"
    source.write_text(yaml.safe_dump_all(docs))
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 0
    assert load(tmp_path / "p.yaml")["spec"]["type"] == "live"
    assert "spec.warm: ignored: spec.type 'live' takes precedence" in stderr
    del plan["spec"]["type"]
    source.write_text(yaml.safe_dump_all(docs))
    assert run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))[0] == 0
    assert load(tmp_path / "p.yaml")["spec"]["type"] == "warm"


def test_warm_set_takes_the_cutover_from_its_migration(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, stderr = _import(capsys, tmp_path, "warm")
    assert plan["spec"]["type"] == "warm"
    assert plan["spec"]["cutover"] == "2026-12-01T02:00:00Z"
    assert plan["spec"]["source"]["context"] == "ledger-dc"
    assert stderr == ""


def test_multus_set_maps_pod_multus_ignored_and_an_id(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, stderr = _import(capsys, tmp_path, "multus")
    assert plan["spec"]["map"]["network"] == [
        {"source": {"type": "pod"}, "destination": {"type": "multus", "name": "net-shared/vlan10"}},
        {"source": {"type": "multus", "name": "shop/backend"},
         "destination": {"type": "multus", "name": "shop/backend"}},
        # given by id: the NetworkAttachmentDefinition with that uid in the input
        {"source": {"type": "multus", "name": "shop/monitoring"}, "destination": {"type": "ignored"}}]
    assert stderr == ""


def test_hooks_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, stderr = _import(capsys, tmp_path, "hooks")
    spec = plan["spec"]
    assert spec["hooks"] == [
        {"name": "quiesce", "image": "quay.io/konveyor/hook-runner:latest",
         "playbook": "./hooks-hook-quiesce.yml", "serviceAccount": "db-quiesce", "deadline": 300},
        # no playbook; the Plan's service account, as Forklift would run it
        {"name": "notify-ops", "image": "registry.example.com/ops/notify:2.1", "serviceAccount": "mtv-hooks"}]
    assert (tmp_path / "out" / "hooks-hook-quiesce.yml").read_text().startswith("- name: Quiesce\n")
    assert spec["vms"][0]["hooks"] == [{"step": "PreHook", "hook": "quiesce"},
                                       {"step": "PostHook", "hook": "notify-ops"}]
    assert spec["vms"][1]["hooks"] == [{"step": "PostHook", "hook": "notify-ops"}]
    assert "Hook openshift-mtv/notify.ops: metadata.name: the smrun hook is named 'notify-ops'" in stderr
    assert "Hook openshift-mtv/notify.ops: spec.aap: no smrun equivalent; ignored" in stderr
    assert "spec.serviceAccount: used for the hooks that have none of their own" in stderr


def test_target_namespace_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, stderr = _import(capsys, tmp_path, "target-namespace")
    assert plan["spec"]["targetNamespace"] == "shop-prod"
    assert plan["spec"]["vms"][0] == {"name": "web-1", "namespace": "shop", "targetName": "storefront-1"}
    assert plan["spec"]["map"]["network"][1]["destination"] == {"type": "multus", "name": "shop-prod/backend"}
    assert [line.split(": ", 2)[2] for line in stderr.splitlines()] == [
        "spec.targetLabels: no smrun equivalent; ignored (the target VM keeps the source's labels)",
        "spec.targetNodeSelector: no smrun equivalent; ignored (the target VM keeps the source's scheduling)"]


def test_transfer_network_is_named_in_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, stderr = _import(capsys, tmp_path, "transfer-network")
    assert stderr.splitlines() == [
        f"{DATA / 'transfer-network.yaml'}:19: Plan openshift-mtv/archive-move: spec.transferNetwork: "
        "no smrun equivalent; ignored"]
    assert plan["spec"]["type"] == "cold"
    # Annotations are kept, except kubectl's bookkeeping.
    assert plan["metadata"]["annotations"] == {"owner": "storage-team"}


def test_vm_by_id_is_resolved_from_the_given_virtual_machines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, _, _ = _import(capsys, tmp_path, "vm-by-id")
    assert plan["spec"]["vms"] == [{"name": "web-2", "namespace": "shop"},
                                   {"name": "web-1", "namespace": "shop"}]


def test_vm_by_id_without_an_inventory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.yaml"
    code, stdout, stderr = run_import(capsys, str(DATA / "vm-by-id.yaml"), "-o", str(out))
    assert code == 2 and stdout == ""
    assert stderr.splitlines() == [
        f"{DATA / 'vm-by-id.yaml'}:47: Plan openshift-mtv/pick-from-inventory: spec.vms[0].id: "
        "5f0e8c2a-7b1d-4e6f-9a3c-2d4b6e8f0a1c: no VirtualMachine with this uid in the input: cannot "
        "resolve the id (give the name, or add the VirtualMachine objects to the input, e.g. "
        "`kubectl get virtualmachine -A -o yaml`, kubevirt.io/v1)"]
    assert not out.exists()


def test_json_list_input_gives_the_same_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kubectl get -o json` output is read like its YAML form."""
    as_json = tmp_path / "live.json"
    as_json.write_text(json.dumps(load(DATA / "live.yaml"), indent=2))
    yaml_plan, _, _ = _import(capsys, tmp_path, "live")
    code, _, stderr = run_import(capsys, str(as_json), "-o", str(tmp_path / "out" / "live.yaml"),
                                 "--host-context", "west")
    assert code == 0, stderr
    assert load(tmp_path / "out" / "live.yaml") == yaml_plan


def test_several_plans_need_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(DATA / "cold.yaml"), str(DATA / "warm.yaml")]
    code, _, stderr = run_import(capsys, *files, "-o", str(tmp_path / "p.yaml"))
    assert code == 2
    assert stderr.splitlines() == ["smrun import forklift: 2 Plans in the input files (mtv/shop-cold, "
                                   "konveyor-forklift/ledger-warm): choose one with --plan NAME "
                                   "(and --namespace NS)"]
    code, _, stderr = run_import(capsys, *files, "-o", str(tmp_path / "p.yaml"), "--plan", "ledger-warm")
    assert code == 0, stderr
    # The other set's objects are named, not silently skipped.
    assert "Plan mtv/shop-cold: not used by Plan konveyor-forklift/ledger-warm; ignored" in stderr
    assert "Provider mtv/south: not used by Plan konveyor-forklift/ledger-warm; ignored" in stderr


def test_simulation_plan_has_no_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "out" / "seed.yaml"
    seed.parent.mkdir()
    seed.write_text((DATA.parents[2] / "examples" / "live" / "seed.yaml").read_text())
    plan, stdout, stderr = _import(capsys, tmp_path, "live", "--simulation", str(seed))
    assert plan["spec"]["simulation"] == {"seed": "./seed.yaml"}
    assert "source" not in plan["spec"] and "target" not in plan["spec"]
    assert not list((tmp_path / "out").glob("*.kubeconfig"))
    assert "Provider openshift-mtv/east: spec: url and secret not used: the plan runs on simulated " \
           "clusters (--simulation)" in stderr
    code, out, err = validate_offline(capsys, tmp_path / "out" / "live.yaml")
    assert code == 0, err
    assert "manifests rendered" in out


def test_host_provider_defaults_to_the_current_context(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --host-context, the host cluster is the context the objects were most likely
    exported from: the kubeconfig's current context, named in the plan and in a warning."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "hub",
                                          "contexts": [{"name": "hub", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    out = tmp_path / "p.yaml"
    code, _, stderr = run_import(capsys, str(DATA / "live.yaml"), "-o", str(out))
    assert code == 0, stderr
    assert load(out)["spec"]["target"] == {"context": "hub"}
    assert "Provider openshift-mtv/host: spec.url: empty (the host cluster): the plan uses context 'hub', " \
           "the current context of the default kubeconfig (--host-context to choose another)" in stderr
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    code, _, stderr = run_import(capsys, str(DATA / "live.yaml"), "-o", str(out))
    assert code == 0
    assert load(out)["spec"]["target"] == {}
    assert "spec.url: empty (the host cluster): the plan uses the current context of the default " \
           "kubeconfig" in stderr


def test_debug_output_has_no_secret(tmp_path: Path) -> None:
    """Even with --debug (debug logs, tracebacks), no token reaches the terminal."""
    import os
    import subprocess
    import sys

    for args, code in ((["-o", str(tmp_path / "p.yaml"), "--plan", "shop-live"], 0),
                       (["-o", str(tmp_path / "q.yaml"), "--plan", "nope"], 2)):  # an error path too
        proc = subprocess.run([sys.executable, "-m", "statemachine", "--debug", "import", "forklift",
                               str(DATA / "cold.yaml"), str(DATA / "live.yaml"), *args],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, KUBECONFIG=str(tmp_path / "none")))
        assert proc.returncode == code, proc.stderr
        for token in TOKENS:
            assert token not in proc.stdout and token not in proc.stderr


def test_fields_forklift_does_not_have_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo or a field of a newer Forklift, anywhere in the objects used: one warning each."""
    docs = load_all(DATA / "hooks.yaml")
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    by_kind[("Plan", "shop-with-hooks")]["spec"]["targetNamspace"] = "typo"
    by_kind[("Plan", "shop-with-hooks")]["spec"]["vms"][0]["hooks"][0]["when"] = "always"
    by_kind[("Provider", "east")]["spec"]["region"] = "eu-1"
    by_kind[("NetworkMap", "east-networks")]["spec"]["map"][0]["source"]["vlanId"] = "10"
    by_kind[("StorageMap", "east-storage")]["spec"]["map"][1]["destination"]["iops"] = "3000"
    by_kind[("Hook", "quiesce")]["spec"]["retries"] = 3
    source = tmp_path / "hooks.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"), "--host-context", "w")
    assert code == 0, stderr
    unknown = sorted(line.split(": ", 1)[1] for line in stderr.splitlines()
                     if line.endswith("not a Forklift v1beta1 field smrun knows; ignored"))
    suffix = ": not a Forklift v1beta1 field smrun knows; ignored"
    assert unknown == sorted(f"{where}{suffix}" for where in (
        "Plan openshift-mtv/shop-with-hooks: spec.targetNamspace",
        "Plan openshift-mtv/shop-with-hooks: spec.vms[0].hooks[0].when",
        "Provider openshift-mtv/east: spec.region",
        "NetworkMap openshift-mtv/east-networks: spec.map[0].source.vlanId",
        "StorageMap openshift-mtv/east-storage: spec.map[1].destination.iops",
        "Hook openshift-mtv/quiesce: spec.retries"))


def test_a_secret_may_hold_a_whole_kubeconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "south-admin",
              "clusters": [{"name": "south", "cluster": {"server": "https://10.0.0.1:6443"}}],
              "users": [{"name": "admin", "user": {"token": "sha256~embedded-kubeconfig-token"}}],
              "contexts": [{"name": "south-admin", "context": {"cluster": "south", "user": "admin"}}]}
    docs = load_all(DATA / "cold.yaml")
    secret = next(d for d in docs if d["metadata"]["name"] == "south-token")
    secret["stringData"] = {"kubeconfig": yaml.safe_dump(config)}
    source = tmp_path / "cold.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    out = tmp_path / "out" / "p.yaml"
    code, stdout, stderr = run_import(capsys, str(source), "-o", str(out))
    assert code == 0, stderr
    assert load(out)["spec"]["source"] == {"kubeconfig": "./p-south.kubeconfig", "context": "south-admin"}
    written = tmp_path / "out" / "p-south.kubeconfig"
    assert load(written) == config
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert "sha256~embedded-kubeconfig-token" not in stdout + stderr
    secret["stringData"] = {"kubeconfig": "just: text"}
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    code, _, stderr = run_import(capsys, str(source), "-o", str(out))
    assert code == 2
    assert "Secret mtv/south-token: data.kubeconfig: not a kubeconfig with a current-context" in stderr
    assert "just: text" not in stderr


def test_per_vm_cutover_from_the_newest_migration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = load_all(DATA / "warm.yaml")
    plan = next(d for d in docs if d["kind"] == "Plan")
    plan["spec"]["vms"][1]["id"] = "uid-of-ledger-2"
    newest = {"apiVersion": "forklift.konveyor.io/v1beta1", "kind": "Migration",
              "metadata": {"name": "ledger-warm-run-2", "namespace": "konveyor-forklift",
                           "creationTimestamp": "2026-12-01T08:00:00Z"},
              "spec": {"plan": {"name": "ledger-warm"}, "cutover": "2026-12-02T02:00:00+01:00",
                       "vmCutover": [{"id": "uid-of-ledger-2", "cutover": "2026-12-02T04:30:00Z"},
                                     {"id": "not-in-the-plan", "cutover": "2026-12-02T05:00:00Z"}]}}
    docs.append(newest)
    source = tmp_path / "warm.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    out = tmp_path / "p.yaml"
    code, _, stderr = run_import(capsys, str(source), "-o", str(out), "--host-context", "w")
    assert code == 0, stderr
    spec = load(out)["spec"]
    assert spec["cutover"] == "2026-12-02T02:00:00+01:00"
    assert spec["vms"] == [{"name": "ledger-1", "namespace": "ledger"},
                           {"name": "ledger-2", "namespace": "ledger", "cutover": "2026-12-02T04:30:00Z"}]
    assert [line.split(": ", 1)[1] for line in stderr.splitlines()] == [
        "Migration konveyor-forklift/ledger-warm-run-1: an older Migration of the Plan; ignored",
        "Migration konveyor-forklift/ledger-warm-run-2: spec.vmCutover[1].id: no VM of the Plan has this "
        "id; ignored"]


def test_keeping_a_failed_target_vm_has_no_equivalent(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    docs = load_all(DATA / "cold.yaml")
    plan = next(d for d in docs if d["kind"] == "Plan")
    plan["spec"]["deleteVmOnFailMigration"] = False
    plan["spec"]["vms"][2]["deleteVmOnFailMigration"] = False
    plan["spec"]["vms"][0]["deleteVmOnFailMigration"] = True  # what smrun does: nothing to say
    source = tmp_path / "cold.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 0, stderr
    assert sorted(line.split(": ", 2)[2] for line in stderr.splitlines()) == sorted(
        f"{where}.deleteVmOnFailMigration: false: no smrun equivalent (smrun's undo removes the target "
        "VM of a failed migration); ignored" for where in ("spec", "spec.vms[2]"))
