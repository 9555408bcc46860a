"""Lay out the manifests a kubectl script needs for a live migration, from ``smrun render``.

A person who migrates VMs with kubectl writes the manifests by hand before the run. This module
stands in for that person: it runs ``smrun render PLAN --show-secrets`` (before anything is timed)
and splits the output into one folder per VM, with one file per step of the live itinerary::

    OUT/setup/source.json, OUT/setup/target.json      the CA bundle patches (once per plan)
    OUT/VMS                                            one "namespace name" line per VM
    OUT/<namespace>__<name>/namespace.yaml             Started
                           prehook.yaml                PreHook (only when the VM has one)
                           datavolumes.yaml            CreateEmptyDataVolumes (may be empty)
                           claims.yaml                 CreateEmptyPersistentVolumeClaims
                           resources.yaml              EnsureResources (Secrets, ConfigMaps, ...)
                           vm.yaml                     CreateStandbyVM
                           target-migration.yaml       CreateTargetMigration
                           source-migration.yaml       CreateSourceMigration (with placeholders)
                           vars                        shell variables: names the script waits on

The render has placeholders where the itinerary uses a value only known at run time
(``<output:connectURL>``, ``<output:targetVMUID>``, ``<output:migrationID>``): the script reads
those from the cluster, as a person would with ``kubectl get -o jsonpath``.

It does not run anything against a cluster.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

_HEADER = re.compile(r"^# (?P<who>\S+): (?P<state>[A-Za-z]+)(?:\[\d+\])? \((?P<action>\w+) on "
                     r"(?P<cluster>source|target)(?:, (?P<template>[^)]*))?\)$")

_FILES = {
    "Started": "namespace.yaml", "PreHook": "prehook.yaml",
    "CreateEmptyDataVolumes": "datavolumes.yaml",
    "CreateEmptyPersistentVolumeClaims": "claims.yaml",
    "EnsureResources": "resources.yaml", "CreateStandbyVM": "vm.yaml",
    "CreateTargetMigration": "target-migration.yaml",
    "CreateSourceMigration": "source-migration.yaml",
}


def render(plan: Path, python: str = sys.executable) -> str:
    """The multi-document output of ``smrun render PLAN --show-secrets``."""
    done = subprocess.run([python, "-m", "statemachine", "render", str(plan), "--show-secrets"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"smrun render failed: {done.stderr.strip()}")
    return done.stdout


def split(text: str) -> tuple[dict[str, Any], dict[str, dict[str, list[str]]]]:
    """(setup patches by cluster, {vm: {file name: [YAML documents]}}) from render output."""
    setup: dict[str, Any] = {}
    vms: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    who = state = cluster = ""
    body: list[str] = []

    def flush() -> None:
        doc = "\n".join(body).strip()
        if doc and state in _FILES:
            vms[who][_FILES[state]].append(doc)

    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            flush()
            who, state, cluster, body = m["who"], m["state"], m["cluster"], []
            vms[who]  # noqa: B018 - keep the VM's order even before its first manifest
            continue
        if line == "---":
            flush()
            body = []
            continue
        if line.startswith("#   ") and who == "setup":
            setup[cluster] = json.loads(line[4:])
            continue
        if not line.startswith("#"):
            body.append(line)
    flush()
    return setup, vms


def _names(docs: list[str], kind: str) -> list[str]:
    out = []
    for doc in docs:
        obj = yaml.safe_load(doc)
        if isinstance(obj, dict) and obj.get("kind") == kind:
            out.append(obj["metadata"]["name"])
    return out


def write(out: Path, plan: Path, python: str = sys.executable) -> list[str]:
    """Render ``plan`` and lay the manifests out under ``out``; the VMs as ``namespace/name``."""
    setup, vms = split(render(plan, python))
    (out / "setup").mkdir(parents=True, exist_ok=True)
    for cluster, patch in setup.items():
        (out / "setup" / f"{cluster}.json").write_text(json.dumps(patch), encoding="utf-8")
    order = [v for v in vms if v != "setup"]
    for vm in order:
        files = vms[vm]
        namespace, name = vm.split("/", 1)
        folder = out / f"{namespace}__{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for fname in _FILES.values():
            (folder / fname).write_text("\n---\n".join(files.get(fname, [])) + "\n",
                                        encoding="utf-8")
        target_vmim = _names(files["target-migration.yaml"], "VirtualMachineInstanceMigration")
        source_vmim = _names(files["source-migration.yaml"], "VirtualMachineInstanceMigration")
        receive = yaml.safe_load(files["target-migration.yaml"][0])["spec"]["receive"]
        variables = {
            "NS": namespace, "VM": name,
            "DVS": " ".join(_names(files["datavolumes.yaml"], "DataVolume")),
            "PVCS": " ".join(_names(files["claims.yaml"], "PersistentVolumeClaim")),
            "HOOK_JOB": " ".join(_names(files["prehook.yaml"], "Job")),
            "TARGET_VMIM": target_vmim[0], "SOURCE_VMIM": source_vmim[0],
            "MIGRATION_ID": receive["migrationID"],
        }
        (folder / "vars").write_text(
            "".join(f"{k}={shlex.quote(v)}\n" for k, v in variables.items()), encoding="utf-8")
    (out / "VMS").write_text("".join(f"{v.replace('/', '__')}\n" for v in order),
                             encoding="utf-8")
    return order


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: prepare.py RENDER_PLAN OUT_DIR")
    print("\n".join(write(Path(sys.argv[2]), Path(sys.argv[1]))))
