"""A Forklift ``openshift`` Provider and its Secret, as a kubeconfig smrun can use.

Forklift reaches a remote KubeVirt cluster with the Provider's ``spec.url`` and, from its Secret,
``token``, the CA (``ca.crt``, or the older ``cacert``) and ``insecureSkipVerify``. A Secret
without a token that holds a whole kubeconfig under ``kubeconfig`` (as smrun's own operator
mode keeps one) is taken as it is. A Provider
with an empty URL is the ``host`` cluster, the one Forklift itself runs in: it has no
credentials of its own, so the plan refers to a kubeconfig context for it instead.

Secret values are read here and written only into the kubeconfig text this module returns (which
``output`` writes with mode 0600). No message built here contains a Secret value: errors name the
Secret and the key, never the data.
"""
from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from statemachine.forklift.documents import InputObject

__all__ = ["HostRef", "KubeconfigText", "current_context", "is_host", "kubeconfig_for"]


@dataclass(frozen=True)
class HostRef:
    """A cluster named by an existing kubeconfig context (``kubeconfig`` ``None``: the default)."""

    kubeconfig: Path | None
    context: str | None
    guessed: bool = False
    """``context`` is the kubeconfig's current context, not one the user named."""


@dataclass(frozen=True)
class KubeconfigText:
    """A kubeconfig to write (``text``), whose only context is ``context``."""

    text: str
    context: str

    def __repr__(self) -> str:  # never show the token, even in a debugger or a test failure
        return f"KubeconfigText(context={self.context!r}, text=<{len(self.text)} characters>)"


def is_host(provider: InputObject) -> bool:
    """Forklift's ``IsHost``: an openshift Provider with an empty URL."""
    return provider.spec.get("type") == "openshift" and not provider.spec.get("url")


def secret_value(secret: InputObject, key: str) -> str | None:
    """``data[key]`` (base64) or ``stringData[key]``, decoded; ``None`` if absent.

    Raises ``DefinitionError`` naming the Secret and key (never the value) when ``data`` is not
    base64 or not UTF-8.
    """
    string_data = secret.data.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    data = secret.data.get("data") or {}
    if key not in data:
        return None
    try:
        return base64.b64decode(str(data[key]), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise secret.error(("data", key), "not valid base64 text") from None


def kubeconfig_for(provider: InputObject, secret: InputObject) -> KubeconfigText:
    """The kubeconfig of a remote openshift Provider: ``spec.url`` + its Secret's token (what
    Forklift uses), else a whole kubeconfig kept in the Secret under ``kubeconfig``.

    Raises ``DefinitionError`` when neither a token nor a kubeconfig is there, or the URL is
    missing.
    """
    if not secret_value(secret, "token") and secret_value(secret, "kubeconfig"):
        return _embedded(secret)
    url = str(provider.spec.get("url") or "") or (secret_value(secret, "url") or "")
    if not url:
        raise provider.error(("spec", "url"), "Required value (a remote openshift provider needs "
                                              "the API server URL)")
    token = secret_value(secret, "token")
    if not token:
        raise secret.error(("data", "token"), f"Required value (the bearer token of {provider.label}, "
                                              "or a kubeconfig under data.kubeconfig)")
    insecure = (secret_value(secret, "insecureSkipVerify") or "").strip().lower() in ("true", "1")
    ca = secret_value(secret, "ca.crt") or secret_value(secret, "cacert")
    name = provider.name
    cluster: dict[str, Any] = {"server": url}
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    elif ca:
        cluster["certificate-authority-data"] = base64.b64encode(ca.encode("utf-8")).decode("ascii")
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token.strip()}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return KubeconfigText(yaml.safe_dump(config, sort_keys=False), name)


def _embedded(secret: InputObject) -> KubeconfigText:
    """The kubeconfig a Secret holds under ``kubeconfig``, checked for a current context."""
    text = secret_value(secret, "kubeconfig") or ""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        config = None
    context = config.get("current-context") if isinstance(config, Mapping) else None
    names = [c.get("name") for c in config.get("contexts") or [] if isinstance(c, Mapping)] \
        if isinstance(config, Mapping) else []
    if not isinstance(context, str) or context not in names:
        raise secret.error(("data", "kubeconfig"), "not a kubeconfig with a current-context that "
                                                   "names one of its contexts")
    return KubeconfigText(text, context)


def default_kubeconfig() -> Path:
    """``$KUBECONFIG``'s first entry, else ``~/.kube/config`` (as kubectl and smrun plans)."""
    first = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    return Path(os.path.expanduser(first)) if first else Path.home() / ".kube" / "config"


def current_context(kubeconfig: Path | None) -> str | None:
    """The ``current-context`` of ``kubeconfig`` (default: :func:`default_kubeconfig`), or
    ``None`` if the file is missing or unreadable. Only that one field is read."""
    path = kubeconfig or default_kubeconfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    value = data.get("current-context") if isinstance(data, Mapping) else None
    return value if isinstance(value, str) and value else None
