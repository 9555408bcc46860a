"""Unknown fields of built-in kinds (``strictdecode.py``): 400 under ``fieldValidation=Strict``
(kubectl's default) with Go's path, dropped with a ``Warning`` under ``Warn`` (the API default,
the ``kubernetes`` client), dropped silently under ``Ignore``; what is not spelled out (a Pod's
spec) is kept."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from statemachine.sim.cluster import SimulatedClusters
from tests.sim.test_admission import _raw

CMS = "/api/v1/namespaces/default/configmaps"


def _merge_patch(sim: SimulatedClusters, path: str, patch: Any) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    req = urllib.request.Request(sim.url("source") + path, method="PATCH",
                                 data=json.dumps(patch).encode(),
                                 headers={"Authorization": f"Bearer {sim.token('source')}",
                                          "Content-Type": "application/merge-patch+json"})
    try:
        with urllib.request.urlopen(req, context=ctx) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _warnings(headers: dict[str, Any]) -> list[str]:
    return [v for k, v in headers.items() if k.lower() == "warning"]


def test_strict_refuses_unknown_fields_with_go_paths(quiet: SimulatedClusters) -> None:
    code, _, status = _raw(quiet, "POST", CMS + "?fieldValidation=Strict", {
        "metadata": {"name": "c", "ownerReferences": [{"apiVersion": "v1", "kind": "X",
                                                       "name": "x", "uid": "1", "colour": 1}]},
        "data": {"k": "v"}, "spec": {}})
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "metadata.ownerReferences[0].colour", unknown field "spec"')
    assert quiet.store("source").try_get("ConfigMap", "default", "c") is None
    code, _, status = _raw(quiet, "POST", "/api/v1/namespaces/default/persistentvolumeclaims"
                           "?fieldValidation=Strict", {
                               "metadata": {"name": "p"}, "spec": {
                                   "accessModes": ["ReadWriteOnce"], "storageClass": "fast",
                                   "resources": {"requests": {"storage": "1Gi"}}}})
    assert code == 400 and status["message"].endswith(
        'strict decoding error: unknown field "spec.storageClass"')


def test_warn_and_ignore_drop_the_fields(quiet: SimulatedClusters) -> None:
    code, headers, body = _raw(quiet, "POST", CMS, {"metadata": {"name": "w"},
                                                   "data": {"k": "v"}, "dta": {"x": "y"}})
    assert code == 201 and "dta" not in body
    assert any('unknown field \\"dta\\"' in w for w in _warnings(headers)), headers
    assert "dta" not in quiet.store("source").get("ConfigMap", "default", "w")
    code, headers, body = _raw(quiet, "POST", CMS + "?fieldValidation=Ignore",
                               {"metadata": {"name": "i"}, "dta": {}})
    assert code == 201 and "dta" not in body and not _warnings(headers)
    # A merge patch that adds one is decoded the same way.
    code, body = _merge_patch(quiet, CMS + "/w?fieldValidation=Strict", {"immutible": True})
    assert code == 400 and body["message"].endswith('unknown field "immutible"')


def test_fields_not_spelled_out_are_kept(quiet: SimulatedClusters) -> None:
    code, _, body = _raw(quiet, "POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict",
                         {"metadata": {"name": "p"}, "spec": {"containers": [
                             {"name": "c", "image": "busybox", "newField": 1}]}})
    assert code == 201 and body["spec"]["containers"][0]["newField"] == 1
    code, _, body = _raw(quiet, "POST", "/api/v1/namespaces/default/pods?fieldValidation=Strict",
                         {"metadata": {"name": "q"}, "spec": {}, "extra": 1})
    assert code == 400 and body["message"].endswith('unknown field "extra"')


def test_kubectl_apply_of_a_misspelt_configmap_is_refused(quiet: SimulatedClusters,
                                                          tmp_path: Path) -> None:
    from tests.conftest import run_kubectl
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "typo"}, "dta": {"k": "v"}}))
    proc = run_kubectl(quiet, tmp_path / "cache", "apply", "-f", str(manifest), check=False)
    assert proc.returncode != 0
    assert ('Error from server (BadRequest): error when creating "' in proc.stderr
            and 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding '
                'error: unknown field "dta"' in proc.stderr), proc.stderr


def test_decoding_comes_before_validation(quiet: SimulatedClusters) -> None:
    code, _, status = _raw(quiet, "POST", CMS + "?fieldValidation=Strict",
                           {"metadata": {"name": "Bad_Name"}, "dta": {}})
    assert code == 400 and status["message"].endswith('unknown field "dta"')
