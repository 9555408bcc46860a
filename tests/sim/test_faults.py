"""``--fault-rate``: a fraction of non-watch requests fails with 500, 429 or a dropped
connection, each kind; watches are never faulted."""
from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import yaml

REQUESTS = 400


def _probe(url: str, token: str, ca: str, path: str, *, body: bool = True) -> str:
    """One GET on a fresh connection: ``ok``, ``500``, ``429`` or ``drop``. ``body=False``: a
    200 is ``ok`` as soon as the status line arrives (a watch streams until its timeout)."""
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                       context=ssl.create_default_context(cafile=ca), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        if resp.status == 200 and not body:
            return "ok"
        data = resp.read()
        if resp.status == 200:
            return "ok"
        if resp.status == 429:
            assert resp.getheader("Retry-After")
            assert json.loads(data)["reason"] == "TooManyRequests"
        if resp.status == 500:
            assert json.loads(data)["reason"] == "InternalError"
        return str(resp.status)
    except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError):
        return "drop"
    finally:
        conn.close()


def test_serve_with_fault_rate(tmp_path: Path) -> None:
    kubeconfig, log = tmp_path / "kubeconfig", tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemachine.sim", "serve", "--kubeconfig-out", str(kubeconfig),
         "--fault-rate", "0.2", "--request-log", str(log), "--tick", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2], env=dict(os.environ))
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("kubeconfig: "), first + (proc.stderr.read() if proc.stderr else "")
        urls = dict(proc.stdout.readline().strip().split(": ", 1) for _ in range(2))
        config = yaml.safe_load(kubeconfig.read_text())
        token = next(u["user"]["token"] for u in config["users"] if u["name"] == "source")
        ca = tmp_path / "ca.pem"
        import base64
        ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"][
            "certificate-authority-data"]))
        results = Counter(_probe(urls["source"], token, str(ca), "/api/v1/namespaces/default")
                          for _ in range(REQUESTS))
        failures = REQUESTS - results["ok"]
        assert 0.12 * REQUESTS <= failures <= 0.28 * REQUESTS, results
        for kind in ("500", "429", "drop"):
            assert results[kind] >= 0.03 * REQUESTS, results
        # watches are never faulted
        watches = Counter(_probe(urls["source"], token, str(ca),
                                 "/api/v1/namespaces/default/configmaps?watch=true",
                                 body=False) for _ in range(30))
        assert watches == Counter({"ok": 30})
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    assert rc == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    statuses = Counter(r["status"] for r in records if r["path"] == "/api/v1/namespaces/default")
    assert statuses[0] == results["drop"] and statuses[500] == results["500"]
    assert {"ts", "cluster", "method", "path", "user", "status"} <= set(records[-1])
