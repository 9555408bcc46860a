"""The other cluster's credentials for a Plan object: ``spec.source|target.kubeconfigSecret``.

``kubeconfigSecret: {name, key, context}`` names a Secret in the Plan's namespace (on the
operator's cluster) whose ``key`` holds a kubeconfig. The operator reads it, writes the kubeconfig
to a file of its own (mode 0600, under the Plan's journal directory, removed when the worker ends)
and hands the plan ``{kubeconfig: FILE, context: CONTEXT}``, so everything after this point is the
plan file's path. A side with neither ``kubeconfig`` nor ``kubeconfigSecret`` is the operator's
own cluster: its ``--kubeconfig``/``--context``, or in a pod a kubeconfig made from the service
account (token file, CA, ``KUBERNETES_SERVICE_HOST``).

The kubeconfig's content never leaves these files: messages name the Secret and the key only.
A missing Secret or key is a refusal (``Refused``, as preflight's), not a schema error.
"""
from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from statemachine.errors import ClusterError
from statemachine import k8s
from statemachine.k8s import Cluster, ObjectRef

def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def in_cluster_kubeconfig(path: Path) -> Path | None:
    """A kubeconfig for the pod's service account, or ``None`` outside a pod."""
    server = k8s.in_cluster_server()
    if server is None:
        return None
    sa = k8s.SERVICE_ACCOUNT_DIR
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
              "clusters": [{"name": "in-cluster", "cluster": {
                  "server": server, "certificate-authority": str(sa / "ca.crt")}}],
              "users": [{"name": "in-cluster", "user": {"tokenFile": str(sa / "token")}}],
              "contexts": [{"name": "in-cluster",
                            "context": {"cluster": "in-cluster", "user": "in-cluster"}}]}
    _write_private(path, yaml.safe_dump(config))
    return path


def resolve(api: Cluster, obj: Mapping[str, Any], directory: Path, *,
            own: tuple[Path | None, str | None]) -> tuple[dict[str, Any], list[str]]:
    """``obj`` with every ``kubeconfigSecret`` (and every omitted side) turned into a kubeconfig
    file under ``directory``; and the refusals (a Secret or key not found, not a kubeconfig)."""
    spec = dict(obj.get("spec") or {})
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    problems: list[str] = []
    if spec.get("simulation") is not None:
        return dict(obj, spec=spec), problems
    for side in ("source", "target"):
        ref = spec.get(side)
        if ref is None:
            kubeconfig, context = own
            if kubeconfig is None:
                kubeconfig = in_cluster_kubeconfig(directory / "in-cluster.kubeconfig")
            if kubeconfig is None:
                continue  # the plan's checks say the side is missing
            spec[side] = {"kubeconfig": str(kubeconfig), **({"context": context} if context else {})}
            continue
        if not isinstance(ref, Mapping) or not isinstance(ref.get("kubeconfigSecret"), Mapping):
            continue
        secret_ref = ref["kubeconfigSecret"]
        rest = {k: v for k, v in ref.items() if k != "kubeconfigSecret"}
        path = directory / f"{side}.kubeconfig"
        problem = _write_secret(api, namespace, secret_ref, f"spec.{side}.kubeconfigSecret",
                                path, both="kubeconfig" in rest)
        if problem:
            problems.append(problem)  # the plan is still checked, with the file it would use
        context = secret_ref.get("context") or rest.get("context")
        spec[side] = {"kubeconfig": str(path), **({"context": context} if context else {})}
    return dict(obj, spec=spec), problems


def _write_secret(api: Cluster, namespace: str, secret_ref: Mapping[str, Any], where: str,
                  path: Path, *, both: bool) -> str:
    """Write the kubeconfig the Secret holds to ``path``; the refusal, or "" when written."""
    name, key = str(secret_ref.get("name", "")), str(secret_ref.get("key") or "kubeconfig")
    if both:
        return f"{where}: give kubeconfig or kubeconfigSecret, not both"
    try:
        secret = api.fetch(ObjectRef("v1", "Secret", namespace, name))
    except ClusterError as exc:
        return f"{where}: Secret {namespace}/{name} cannot be read: {type(exc).__name__}"
    if secret is None:
        return f"{where}: Secret {namespace}/{name} not found"
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return f"{where}: Secret {namespace}/{name} has no key {key!r}"
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
        parsed = yaml.safe_load(text)
    except (binascii.Error, UnicodeDecodeError, yaml.YAMLError):
        parsed = None
    if not isinstance(parsed, dict) or "clusters" not in parsed:
        return f"{where}: key {key!r} of Secret {namespace}/{name} is not a kubeconfig"
    _write_private(path, text)
    return ""
