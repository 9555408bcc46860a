"""What a simulated CDI importer can reach: VirtualMachineExport links and one image host.

:func:`check_http_source` answers, for a DataVolume ``source.http``, ``None`` when the download
would work, or the error text a CDI importer would report. Reachable are:

- external export links ``https://<export host of a simulated cluster>/api/export.kubevirt.io/
  v1/namespaces/<ns>/virtualmachineexports/<name>/volumes/<pvc>/<file>`` (any cluster, which is
  how a cold migration copies disks across clusters) and internal links
  ``https://virt-export-<name>.<ns>.svc/volumes/<pvc>/<file>`` (same cluster only). The export must
  be ``Ready``, list that volume, and the request must carry its token, either as header
  ``x-kubevirt-export-token`` from a ``secretExtraHeaders`` Secret (``data`` or ``stringData``
  values of the form ``x-kubevirt-export-token:<token>``) or as the same-named query parameter;
- ``https://images.sim.smrun.io/...``: a simulated image server that always answers.

Everything else fails like a DNS lookup of an unknown host. No bytes are moved.
"""
from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from statemachine.sim.controller import ClusterContext
from statemachine.sim import addresses
from statemachine.sim.store import Obj

IMAGE_HOST = "images.sim.smrun.io"
TOKEN_HEADER = "x-kubevirt-export-token"
_EXTERNAL = re.compile(r"^/api/export\.kubevirt\.io/v1(?:beta1)?/namespaces/([^/]+)/"
                       r"virtualmachineexports/([^/]+)/volumes/([^/]+)/[^/]+$")
_INTERNAL_HOST = re.compile(r"^virt-export-(.+)\.([^.]+)\.svc$")
_INTERNAL_PATH = re.compile(r"^/volumes/([^/]+)/[^/]+$")


def secret_values(secret: Obj) -> list[str]:
    """The decoded values of a Secret (``data`` is base64, ``stringData`` plain)."""
    out = [str(v) for v in (secret.get("stringData") or {}).values()]
    for value in (secret.get("data") or {}).values():
        try:
            out.append(base64.b64decode(str(value), validate=True).decode())
        except (ValueError, UnicodeDecodeError):
            out.append(str(value))
    return out


def secret_value(secret: Obj | None, key: str) -> str | None:
    if secret is None:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(str(raw), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return str(raw)


def _unreachable(url: str, host: str) -> str:
    return (f"Unable to connect to http data source: Get \"{url}\": dial tcp: lookup {host}: "
            "no such host")


def _status_error(code: int, text: str) -> str:
    return (f"Unable to connect to http data source: expected status code 200, got {code}. "
            f"Status: {code} {text}")


def _offered_tokens(ctx: ClusterContext, ns: str, http: dict[str, Any], query: str) -> list[str]:
    tokens = list(parse_qs(query).get(TOKEN_HEADER, []))
    for name in http.get("secretExtraHeaders") or []:
        secret = ctx.store.try_get("Secret", ns, str(name))
        for value in secret_values(secret or {}):
            for line in value.splitlines():
                header, _, token = line.partition(":")
                if header.strip().lower() == TOKEN_HEADER:
                    tokens.append(token.strip())
    for header in http.get("extraHeaders") or []:
        name, _, token = str(header).partition(":")
        if name.strip().lower() == TOKEN_HEADER:
            tokens.append(token.strip())
    return tokens


def check_http_source(ctx: ClusterContext, ns: str, http: dict[str, Any]) -> str | None:
    """``None`` if the http source can be downloaded, else the importer's error message."""
    url = str(http.get("url", ""))
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == IMAGE_HOST:
        return None
    owner = addresses.cluster_of_export_host(host, list(ctx.clusters))
    found = _EXTERNAL.match(parts.path) if owner else None
    internal = _INTERNAL_HOST.match(host)
    if found is not None and owner is not None:
        export_ctx, (exp_ns, name, volume) = ctx.clusters[owner], found.groups()
    elif internal is not None and _INTERNAL_PATH.match(parts.path):
        export_ctx = ctx
        name, exp_ns = internal.groups()
        volume = _INTERNAL_PATH.match(parts.path).groups()[0]  # type: ignore[union-attr]
    else:
        return _unreachable(url, host)
    export = export_ctx.store.try_get("VirtualMachineExport", exp_ns, name)
    if export is None:
        return _status_error(404, "Not Found")
    status = export.get("status") or {}
    if status.get("phase") != "Ready":
        return _status_error(503, "Service Unavailable")
    links = status.get("links") or {}
    names = {v.get("name") for part in links.values() for v in (part or {}).get("volumes") or []}
    if volume not in names:
        return _status_error(404, "Not Found")
    ref = status.get("tokenSecretRef")
    expected = secret_value(export_ctx.store.try_get("Secret", exp_ns, str(ref)) if ref else None,
                            "token")
    if expected is None or expected not in _offered_tokens(ctx, ns, http, parts.query):
        return _status_error(401, "Unauthorized")
    return None
