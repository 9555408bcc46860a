"""Bad Forklift input: exit 2, one line naming the file and the field, no traceback, nothing written.

Each case edits one object of a valid set (tests/data/forklift) the way a typo, an unsupported
provider or a newer/older Forklift would, and checks the one line smrun prints.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.forklift.conftest import DATA, load_all, run_import

Docs = list[dict[str, Any]]


def _obj(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        target = obj
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


CASES: list[tuple[str, str, str | None, Callable[[dict[str, Any]], None], str]] = [
    # (id, kind, name, edit, expected "Kind ns/name: field: message")
    ("vsphere-provider", "Provider", "south", _set(["spec", "type"], "vsphere"),
     "Provider mtv/south: spec.type: vsphere: unsupported provider type (smrun imports only "
     "openshift providers, i.e. KubeVirt clusters)"),
    ("ovirt-provider", "Provider", "north", _set(["spec", "type"], "ovirt"),
     "Provider mtv/north: spec.type: ovirt: unsupported provider type"),
    ("openstack-provider", "Provider", "south", _set(["spec", "type"], "openstack"),
     "Provider mtv/south: spec.type: openstack: unsupported provider type"),
    ("ova-provider", "Provider", "south", _set(["spec", "type"], "ova"),
     "Provider mtv/south: spec.type: ova: unsupported provider type"),
    ("type-enum", "Plan", None, _set(["spec", "type"], "hot"),
     'Plan mtv/shop-cold: spec.type: Unsupported value: "hot": supported values: "cold", "warm", '
     '"live", "conversion"'),
    ("conversion", "Plan", None, _set(["spec", "type"], "conversion"),
     "Plan mtv/shop-cold: spec.type: conversion: no smrun equivalent"),
    ("warm-type", "Plan", None, _set(["spec", "warm"], "yes"),
     "Plan mtv/shop-cold: spec.warm: must be of type boolean (got string)"),
    ("target-namespace-required", "Plan", None, _drop(["spec", "targetNamespace"]),
     "Plan mtv/shop-cold: spec.targetNamespace: Required value"),
    ("vms-type", "Plan", None, _set(["spec", "vms"], {"name": "web-1"}),
     "Plan mtv/shop-cold: spec.vms: must be of type array (got object)"),
    ("vm-namespace", "Plan", None, _drop(["spec", "vms", 1, "namespace"]),
     "Plan mtv/shop-cold: spec.vms[1].namespace: Required value"),
    ("power-enum", "Plan", None, _set(["spec", "vms", 0, "targetPowerState"], "sleeping"),
     'Plan mtv/shop-cold: spec.vms[0].targetPowerState: Unsupported value: "sleeping"'),
    ("network-dest-enum", "NetworkMap", None, _set(["spec", "map", 0, "destination", "type"], "bridge"),
     'NetworkMap mtv/shop-networks: spec.map[0].destination.type: Unsupported value: "bridge": '
     'supported values: "pod", "multus", "ignored"'),
    ("multus-needs-name", "NetworkMap", None, _drop(["spec", "map", 1, "destination", "name"]),
     "NetworkMap mtv/shop-networks: spec.map[1].destination.name: Required value (type multus)"),
    ("access-mode-enum", "StorageMap", None,
     _set(["spec", "map", 0, "destination", "accessMode"], "ReadWriteOncePod"),
     'StorageMap mtv/shop-storage: spec.map[0].destination.accessMode: Unsupported value: '
     '"ReadWriteOncePod"'),
    ("storage-class-required", "StorageMap", None, _drop(["spec", "map", 1, "destination", "storageClass"]),
     "StorageMap mtv/shop-storage: spec.map[1].destination.storageClass: Required value"),
    ("missing-map", "Plan", None, _set(["spec", "map", "storage", "name"], "nope"),
     "Plan mtv/shop-cold: spec.map.storage: StorageMap mtv/nope is not in the input files"),
    ("missing-provider", "Plan", None, _set(["spec", "provider", "source", "name"], "gone"),
     "Plan mtv/shop-cold: spec.provider.source: Provider mtv/gone is not in the input files"),
    ("missing-secret", "Provider", "north", _set(["spec", "secret", "name"], "nothing-here"),
     "Provider mtv/north: spec.secret: Secret mtv/nothing-here is not in the input files"),
    ("bad-token-base64", "Secret", "north-token", _set(["data", "token"], "not*base64"),
     "Secret mtv/north-token: data.token: not valid base64 text"),
    ("forklift-version", "Plan", None, _set(["apiVersion"], "forklift.konveyor.io/v1alpha1"),
     "Plan mtv/shop-cold: apiVersion: forklift.konveyor.io/v1alpha1: only "
     "forklift.konveyor.io/v1beta1 is supported"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_file_and_field(
        case: tuple[str, str, str | None, Callable[[dict[str, Any]], None], str],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, kind, name, edit, expected = case
    docs = load_all(DATA / "cold.yaml")
    edit(_obj(docs, kind, name))
    source = tmp_path / "forklift.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    out = tmp_path / "out" / "plan.yaml"
    code, stdout, stderr = run_import(capsys, str(source), "-o", str(out))
    assert code == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{source}:"), lines[0]
    where, rest = lines[0].split(": ", 1)
    assert where.split(":")[1].isdigit(), "the line number of the field"
    assert rest.startswith(expected), rest
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_the_line_is_the_field_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "forklift.yaml"
    text = (DATA / "cold.yaml").read_text().replace("  warm: false\n", "  warm: maybe\n")
    source.write_text(text)
    line = text.splitlines().index("  warm: maybe") + 1
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 2
    assert stderr == (f"{source}:{line}: Plan mtv/shop-cold: spec.warm: must be of type boolean "
                      "(got string)\n")


@pytest.mark.parametrize("text, message", [
    ("kind: Plan\nkind: Plan\n", "2: kind: duplicate key"),
    ("a: [1, 2\n", "invalid YAML"),
    ("- 1\n- 2\n", "document 1: not an object"),
    ("apiVersion: v1\nkind: List\nitems: 3\n", "document 1: items: must be a list"),
])
def test_unreadable_documents(text: str, message: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.yaml"
    source.write_text(text)
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 2
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"{source}:")
    assert message in stderr


def test_hook_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = load_all(DATA / "hooks.yaml")
    source = tmp_path / "hooks.yaml"

    def attempt(expected: str) -> None:
        source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
        assert code == 2
        assert len(stderr.splitlines()) == 1 and stderr.startswith(f"{source}:")
        assert expected in stderr, stderr

    plan = _obj(docs, "Plan")
    plan["spec"]["vms"][0]["hooks"][0]["step"] = "MidHook"
    attempt('Plan openshift-mtv/shop-with-hooks: spec.vms[0].hooks[0].step: Unsupported value: '
            '"MidHook": supported values: "PreHook", "PostHook"')
    plan["spec"]["vms"][0]["hooks"][0]["step"] = "PreHook"
    _obj(docs, "Hook", "quiesce")["spec"]["playbook"] = "%%% not base64"
    attempt("Hook openshift-mtv/quiesce: spec.playbook: not base64-encoded UTF-8 text")
    hook = _obj(docs, "Hook", "notify.ops")
    del hook["spec"]["image"]
    _obj(docs, "Hook", "quiesce")["spec"]["playbook"] = ""
    attempt("Hook openshift-mtv/notify.ops: spec.aap: an Ansible Automation Platform job template: "
            "no smrun equivalent")
    plan["spec"]["vms"][1]["hooks"][0]["hook"]["name"] = "absent"
    del plan["spec"]["vms"][0]["hooks"][1]
    attempt("Plan openshift-mtv/shop-with-hooks: spec.vms[1].hooks[0].hook: Hook openshift-mtv/absent "
            "is not in the input files")


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run_import(capsys, "-o", str(tmp_path / "p.yaml"))
    assert code == 2 and "give the Forklift YAML files, or --from-cluster CONTEXT" in stderr
    code, _, stderr = run_import(capsys, str(DATA / "cold.yaml"), "--from-cluster", "x",
                                 "-o", str(tmp_path / "p.yaml"))
    assert code == 2 and "not both" in stderr
    code, _, stderr = run_import(capsys, str(DATA / "cold.yaml"))
    assert code == 2 and "-o/--output" in stderr
    code, _, stderr = run_import(capsys, str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "p.yaml"))
    assert code == 2 and stderr.startswith(f"{tmp_path / 'missing.yaml'}: cannot read")


def test_input_limits_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same limits as every YAML smrun reads: a NUL, an alias bomb."""
    source = tmp_path / "nul.yaml"
    source.write_text("apiVersion: v1\nkind: List\nitems: []\x00\n")
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 2 and stderr.startswith(f"{source}:3:") and "forbidden character NUL" in stderr
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        bomb.append(f"{'abcdefg'[i]}: &{'abcdefg'[i]} [{', '.join(['*' + 'abcdefg'[i - 1]] * 10)}]")
    source = tmp_path / "bomb.yaml"
    source.write_text("\n".join(bomb) + "\n")
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 2 and "too many alias references" in stderr and len(stderr.splitlines()) == 1


def test_import_without_a_format_shows_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from statemachine.cli import main

    assert main(["import"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: smrun import") and "forklift" in err


def test_a_playbook_that_is_not_yaml_is_named_at_the_hook(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    docs = load_all(DATA / "hooks.yaml")
    _obj(docs, "Hook", "quiesce")["spec"]["playbook"] = base64.b64encode(b"- name: x\n  a: [1,\n").decode()
    source = tmp_path / "hooks.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    out = tmp_path / "out" / "p.yaml"
    code, _, stderr = run_import(capsys, str(source), "-o", str(out))
    assert code == 2
    assert len(stderr.splitlines()) == 1
    assert "Hook openshift-mtv/quiesce: spec.playbook: the decoded playbook (line 3): invalid YAML" in stderr
    assert not (tmp_path / "out").exists()


def test_a_bad_cutover_time_is_named_at_the_migration(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    docs = load_all(DATA / "warm.yaml")
    _obj(docs, "Migration")["spec"]["cutover"] = "tomorrow at two"
    source = tmp_path / "warm.yaml"
    source.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    code, _, stderr = run_import(capsys, str(source), "-o", str(tmp_path / "p.yaml"))
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"{source}:")
    assert "Migration konveyor-forklift/ledger-warm-run-1: spec.cutover: 'tomorrow at two' is not an " \
           "RFC 3339 time" in stderr
