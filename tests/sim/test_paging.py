"""Lists: limit/continue over one snapshot, expired tokens, resourceVersion + resourceVersionMatch.

Through kubectl (``--chunk-size``), the ``kubernetes`` client and lightkube.
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters

MakeSim = Callable[..., SimulatedClusters]
CMS = "/api/v1/namespaces/pages/configmaps"


def _seed(sim: SimulatedClusters, count: int) -> None:
    store = sim.store("source")
    store.create("Namespace", {"metadata": {"name": "pages"}})
    for i in range(count):
        store.create("ConfigMap", {"metadata": {"name": f"cm-{i:02d}", "namespace": "pages"}})


def _get(dyn: Any, path: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` (with its query); the status and the JSON body, errors included."""
    from kubernetes.client.exceptions import ApiException
    try:
        raw = dyn.request("get", path, serialize=False)
        return raw.status, json.loads(raw.data)
    except ApiException as exc:
        return int(exc.status or 0), json.loads(exc.body or "{}")


def _names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


def test_kubectl_chunk_size_pages_through_everything(sim: SimulatedClusters,
                                                     kubectl: Callable[..., Any]) -> None:
    _seed(sim, 7)
    out = kubectl("get", "cm", "-n", "pages", "--chunk-size=2", "-v=6")
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == [
        f"cm-{i:02d}" for i in range(7)]
    requests = [line for line in out.stderr.splitlines() if "/configmaps?" in line]
    assert len(requests) == 4 and all("limit=2" in r for r in requests)
    assert sum("continue=" in r for r in requests) == 3


def test_pages_are_served_from_the_first_pages_snapshot(sim: SimulatedClusters,
                                                        dynamic_client: Any) -> None:
    _seed(sim, 5)
    dyn = dynamic_client(sim)
    store = sim.store("source")
    status, first = _get(dyn, CMS + "?limit=2")
    assert status == 200 and _names(first) == ["cm-00", "cm-01"]
    rv = first["metadata"]["resourceVersion"]
    assert first["metadata"]["remainingItemCount"] == 3
    token = first["metadata"]["continue"]
    decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert decoded == {"v": "meta.k8s.io/v1", "rv": int(rv), "start": "cm-01\x00"}
    # Changes after the first page do not show up in later pages.
    store.delete("ConfigMap", "pages", "cm-03")
    store.create("ConfigMap", {"metadata": {"name": "cm-02a", "namespace": "pages"}})
    store.patch("ConfigMap", "pages", "cm-04", {"data": {"changed": "yes"}})
    _, second = _get(dyn, f"{CMS}?limit=2&continue={token}")
    assert _names(second) == ["cm-02", "cm-03"]
    assert second["metadata"]["resourceVersion"] == rv
    _, third = _get(dyn, f"{CMS}?limit=2&continue={second['metadata']['continue']}")
    assert _names(third) == ["cm-04"] and "data" not in third["items"][0]
    assert "continue" not in third["metadata"] and "remainingItemCount" not in third["metadata"]
    # A selector: pages of matching objects, no remainingItemCount.
    _, selected = _get(dyn, CMS + "?limit=1&fieldSelector=metadata.name%21%3Dcm-00")
    assert _names(selected) == ["cm-01"] and "remainingItemCount" not in selected["metadata"]
    assert selected["metadata"]["continue"]


def test_expired_continue_token_gets_410_and_a_fresh_token(make_sim: MakeSim,
                                                           dynamic_client: Any) -> None:
    sim = make_sim(controllers=False, history=3)
    _seed(sim, 6)
    dyn = dynamic_client(sim)
    _, first = _get(dyn, CMS + "?limit=2")
    store = sim.store("source")
    for i in range(5):  # more changes of the kind than the history keeps
        store.patch("ConfigMap", "pages", "cm-05", {"data": {"i": str(i)}})
    status, gone = _get(dyn, f"{CMS}?limit=2&continue={first['metadata']['continue']}")
    assert status == 410 and gone["reason"] == "Expired" and gone["code"] == 410
    assert gone["message"] == (
        "The provided continue parameter is too old to display a consistent list result. You "
        "can start a new list without the continue parameter, or use the continue token in this "
        "response to retrieve the remainder of the results. Continuing with the provided token "
        "results in an inconsistent list - objects that were created, modified, or deleted "
        "between the time the first chunk was returned and now may show up in the list.")
    fresh = gone["metadata"]["continue"]
    assert json.loads(base64.urlsafe_b64decode(fresh + "=" * (-len(fresh) % 4)))["rv"] == -1
    status, rest = _get(dyn, f"{CMS}?limit=10&continue={fresh}")
    assert status == 200 and _names(rest) == ["cm-02", "cm-03", "cm-04", "cm-05"]
    assert rest["items"][-1]["data"] == {"i": "4"}  # continued from the current state
    status, bad = _get(dyn, f"{CMS}?limit=2&continue=not-a-token")
    assert status == 400 and bad["reason"] == "BadRequest"
    assert bad["message"].startswith("invalid continue token: continue key is not valid")
    status, both = _get(dyn, f"{CMS}?limit=2&resourceVersion=5&continue={fresh}")
    assert (status, both["message"]) == (
        400, "specifying resource version is not allowed when using continue")


@pytest.mark.parametrize("query, message", [
    ("resourceVersionMatch=Exact",
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     "resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ("resourceVersion=0&resourceVersionMatch=Exact",
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
    ("resourceVersion=1&resourceVersionMatch=Newest",
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Unsupported value: "Newest": '
     'supported values: "Exact", "NotOlderThan", ""'),
    ("resourceVersionMatch=NotOlderThan&continue=x",
     'ListOptions.meta.k8s.io "" is invalid: [resourceVersionMatch: Forbidden: '
     "resourceVersionMatch is forbidden unless resourceVersion is provided, "
     "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is "
     "provided]"),
    ("sendInitialEvents=true",
     'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: '
     "sendInitialEvents is forbidden for list"),
    ("watch=true&resourceVersionMatch=NotOlderThan",
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
    ("watch=true&sendInitialEvents=true",
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
     "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
])
def test_invalid_list_options_get_422(sim: SimulatedClusters, dynamic_client: Any,
                                      query: str, message: str) -> None:
    status, body = _get(dynamic_client(sim), f"/api/v1/namespaces/default/configmaps?{query}")
    assert (status, body["reason"], body["message"]) == (422, "Invalid", message)
    assert body["details"]["kind"] == "ListOptions" and body["details"]["group"] == "meta.k8s.io"
    assert body["details"]["causes"][0]["field"] in ("resourceVersionMatch", "sendInitialEvents")
    assert not body["details"]["causes"][0]["message"].startswith("resourceVersionMatch:")


def test_resource_version_match_exact_and_not_older_than(make_sim: MakeSim,
                                                         dynamic_client: Any) -> None:
    sim = make_sim(controllers=False, history=4)
    _seed(sim, 2)
    dyn = dynamic_client(sim)
    store = sim.store("source")
    before = str(store.resource_version)
    store.create("ConfigMap", {"metadata": {"name": "cm-later", "namespace": "pages"}})
    store.delete("ConfigMap", "pages", "cm-00")
    status, exact = _get(dyn, f"{CMS}?resourceVersion={before}&resourceVersionMatch=Exact")
    assert status == 200 and _names(exact) == ["cm-00", "cm-01"]
    assert exact["metadata"]["resourceVersion"] == before
    # Without a match, a resourceVersion with a limit is the legacy exact form.
    _, legacy = _get(dyn, f"{CMS}?resourceVersion={before}&limit=5")
    assert _names(legacy) == ["cm-00", "cm-01"]
    _, newer = _get(dyn, f"{CMS}?resourceVersion={before}&resourceVersionMatch=NotOlderThan")
    assert _names(newer) == ["cm-01", "cm-later"]
    for i in range(5):
        store.patch("ConfigMap", "pages", "cm-01", {"data": {"i": str(i)}})
    status, gone = _get(dyn, f"{CMS}?resourceVersion={before}&resourceVersionMatch=Exact")
    assert (status, gone["reason"], gone["message"]) == (
        410, "Expired", "The resourceVersion for the provided list is too old.")
    future = store.resource_version + 100
    started = time.monotonic()
    status, late = _get(dyn, f"{CMS}?resourceVersion={future}&resourceVersionMatch=NotOlderThan")
    assert 2.5 < time.monotonic() - started < 6
    assert (status, late["reason"]) == (504, "Timeout")
    assert late["message"] == (f"Timeout: Too large resource version: {future}, current: "
                               f"{store.resource_version}")
    assert late["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                          "message": "Too large resource version"}]


def test_lightkube_lists_in_chunks(sim: SimulatedClusters, tmp_path: Path) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import ConfigMap
    _seed(sim, 5)
    config = KubeConfig.from_file(str(sim.kubeconfig_path))
    client = Client(config=config, field_manager="test")
    names = [cm.metadata.name if cm.metadata else "" for cm in
             client.list(ConfigMap, namespace="pages", chunk_size=2)]
    assert names == [f"cm-{i:02d}" for i in range(5)]
