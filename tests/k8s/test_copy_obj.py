"""``k8s.copy_obj``: the JSON-only deep copy used for cache reads and manifests (issue 8).

It must copy every dict and list (no sub-object shared with the original, so a caller mutating
its copy never changes the watch cache), keep scalars, share anything else (tuples, objects) as
is, and give the same result as ``copy.deepcopy`` on JSON data.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from statemachine.k8s import copy_obj

VMI: dict[str, Any] = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                 "annotations": {}, "generation": 3, "deletionTimestamp": None},
    "spec": {"domain": {"cpu": {"cores": 2}, "devices": {"disks": [
        {"name": "root", "disk": {"bus": "virtio"}}, {"name": "data", "bootOrder": 2}]}},
        "volumes": [], "nodeSelector": {"a": "b"}},
    "status": {"phase": "Running", "ready": True, "ratio": 0.5,
               "conditions": [{"type": "Ready", "status": "True"}],
               "matrix": [[1, 2], [3, [4, {"deep": ["x"]}]]]},
}


def containers(value: Any) -> list[Any]:
    """Every dict and list inside ``value`` (itself included)."""
    out: list[Any] = []
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            out += containers(v)
    elif isinstance(value, list):
        out.append(value)
        for v in value:
            out += containers(v)
    return out


def test_a_copy_is_equal_and_shares_no_dict_or_list() -> None:
    copied = copy_obj(VMI)
    assert copied == VMI
    originals = {id(c) for c in containers(VMI)}
    assert len(containers(copied)) == len(containers(VMI))
    assert not originals & {id(c) for c in containers(copied)}


def test_mutating_the_copy_leaves_the_original_alone() -> None:
    before = json.dumps(VMI, sort_keys=True)
    copied = copy_obj(VMI)
    copied["metadata"]["labels"]["app"] = "db"
    copied["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = "sata"
    copied["spec"]["volumes"].append({"name": "new"})
    copied["status"]["matrix"][1][1][1]["deep"].append("y")
    del copied["status"]["conditions"][0]
    assert json.dumps(VMI, sort_keys=True) == before


def test_scalars_are_kept_as_they_are() -> None:
    for value in ("text", "", 0, 7, -1, 2.5, True, False, None):
        assert copy_obj(value) is value
    copied = copy_obj({"s": "x", "i": 1, "f": 1.5, "b": False, "n": None})
    assert copied == {"s": "x", "i": 1, "f": 1.5, "b": False, "n": None}
    assert type(copied["b"]) is bool and type(copied["i"]) is int


def test_tuples_and_other_objects_are_shared_as_is() -> None:
    class Opaque:
        pass

    inner = {"k": [1]}
    tup = (inner, [2])
    opaque = Opaque()
    copied = copy_obj({"t": tup, "o": opaque, "l": [tup, opaque]})
    assert copied["t"] is tup and copied["t"][0] is inner  # not descended into
    assert copied["o"] is opaque and copied["l"][1] is opaque and copied["l"][0] is tup


def test_same_result_as_deepcopy_on_json_data() -> None:
    samples: list[Any] = [VMI, [], {}, [[[]]], {"a": {"b": {"c": {}}}}, [VMI, VMI["status"]],
                          json.loads(json.dumps({"items": [VMI] * 3, "metadata": {"resourceVersion": "9"}}))]
    for sample in samples:
        mine, theirs = copy_obj(sample), copy.deepcopy(sample)
        assert mine == theirs
        assert json.dumps(mine) == json.dumps(theirs)  # same key order too
        assert type(mine) is type(theirs)
