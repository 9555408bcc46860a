"""`smrun run` and `smrun validate` against a cluster whose TLS certificate does not verify, end
to end (a process of their own, as an admin runs them): the kubeconfig names another CA, a
server name the certificate is not valid for, or the certificate has expired. One line naming
the cluster and its server, the cause and what to check; exit 3; no traceback, no retry (a
certificate does not change between tries), no token, and nothing applied (the target is never
asked anything).
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.tls import ServerCert, make_cert
from tlsserver import dated_cert, serving_tls

UNKNOWN_CA = ("cluster target: TLS verification of the API server at {server} failed: "
              "certificate signed by an unknown CA; check the certificate-authority-data (or "
              "certificate-authority) of this cluster in the kubeconfig")
EXPIRED = ("cluster target: TLS verification of the API server at {server} failed: "
           "certificate has expired; the server's certificate must be renewed, or this "
           "machine's clock is wrong")
WRONG_NAME = ("cluster target: TLS verification of the API server at {server} failed: "
              "certificate is not valid for '{name}'; check the server URL (or tls-server-name) "
              "of this cluster in the kubeconfig")


@pytest.fixture
def logged_sim(make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> SimulatedClusters:
    """The simulated clusters, with every request they get logged (method, path, cluster)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command: the simulator serves plain http")
    return make_sim(kubeconfig_out=tmp_path / "kubeconfig", request_log=tmp_path / "requests.jsonl")


@pytest.fixture
def other_address(logged_sim: SimulatedClusters) -> Iterator[str]:
    """``https://127.0.0.2:PORT``: a TLS server with the simulator's certificate (valid for
    127.0.0.1 and localhost only) on an address it is not valid for. It only shakes hands: the
    client must give up during the handshake."""
    assert logged_sim.cert is not None
    with serving_tls(logged_sim.cert.server_context(), host="127.0.0.2") as port:
        yield f"https://127.0.0.2:{port}"


def _kubeconfig(sim: SimulatedClusters, tmp_path: Path, **target: Any) -> Path:
    """The simulator's kubeconfig with ``target``'s cluster entry changed by ``target``."""
    config = yaml.safe_load(sim.kubeconfig_path.read_text())
    for entry in config["clusters"]:
        if entry["name"] == "target":
            entry["cluster"].update(target)
    path = tmp_path / "kubeconfig-untrusted"
    path.write_text(yaml.safe_dump(config))
    return path


def _plan(tmp_path: Path, kubeconfig: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "smrun.io/v1alpha1", "kind": "Plan", "metadata": {"name": "untrusted"},
        "spec": {"type": "live",
                 "source": {"kubeconfig": str(kubeconfig), "context": "source"},
                 "target": {"kubeconfig": str(kubeconfig), "context": "target"},
                 "vms": [{"name": "web-1", "namespace": "shop"}]}}))
    return path


def _smrun(tmp_path: Path, command: str, plan: Path,
           *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    argv = {"run": ["run", str(plan), "--state-dir", str(tmp_path / "state")],
            "validate": ["validate", str(plan)]}[command]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "statemachine", *argv, *extra],
                          capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - started


def _requests(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "requests.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _assert_refused_at_once(sim: SimulatedClusters, tmp_path: Path,
                            proc: subprocess.CompletedProcess[str], took: float,
                            expected: str) -> None:
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [expected], proc.stderr  # no note, no retry, no traceback
    for cluster in ("source", "target"):
        assert sim.token(cluster) not in proc.stderr + proc.stdout
    # Not retried: smrun's policy would wait up to 6.35 s in all before giving up.
    assert took < 20, took
    # Nothing applied: the source was only read, and the target not even that.
    requests = _requests(tmp_path)
    assert all(r["method"] == "GET" for r in requests), requests
    assert not any(r["cluster"] == "target" for r in requests), requests


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_kubeconfig_naming_another_ca_is_one_line_exit_3(
        logged_sim: SimulatedClusters, tmp_path: Path, command: str) -> None:
    (tmp_path / "other").mkdir()
    other = make_cert(tmp_path / "other")  # a CA of its own, not the one that signed the server's
    assert isinstance(other, ServerCert)
    kubeconfig = _kubeconfig(logged_sim, tmp_path, **{
        "certificate-authority-data": base64.b64encode(other.pem()).decode()})
    proc, took = _smrun(tmp_path, command, _plan(tmp_path, kubeconfig))
    _assert_refused_at_once(logged_sim, tmp_path, proc, took,
                            UNKNOWN_CA.format(server=logged_sim.url("target")))


def test_a_tls_server_name_the_certificate_is_not_valid_for(
        logged_sim: SimulatedClusters, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(logged_sim, tmp_path, **{"tls-server-name": "api.wrong.example"})
    proc, took = _smrun(tmp_path, "run", _plan(tmp_path, kubeconfig))
    _assert_refused_at_once(logged_sim, tmp_path, proc, took, WRONG_NAME.format(
        server=logged_sim.url("target"), name="api.wrong.example"))


def test_a_server_address_the_certificate_is_not_valid_for(
        logged_sim: SimulatedClusters, other_address: str, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(logged_sim, tmp_path, server=other_address)
    proc, took = _smrun(tmp_path, "run", _plan(tmp_path, kubeconfig))
    _assert_refused_at_once(logged_sim, tmp_path, proc, took,
                            WRONG_NAME.format(server=other_address, name="127.0.0.2"))


def test_an_expired_certificate_is_one_line_exit_3(logged_sim: SimulatedClusters,
                                                  tmp_path: Path) -> None:
    """The target's server presents a certificate the kubeconfig trusts, expired since 2020."""
    (tmp_path / "expired").mkdir()
    cert = dated_cert(tmp_path / "expired", "20200101000000Z", "20200102000000Z")
    assert cert is not None
    with serving_tls(cert.server_context()) as port:
        server = f"https://127.0.0.1:{port}"
        kubeconfig = _kubeconfig(logged_sim, tmp_path, server=server, **{
            "certificate-authority-data": base64.b64encode(cert.pem()).decode()})
        proc, took = _smrun(tmp_path, "run", _plan(tmp_path, kubeconfig))
    _assert_refused_at_once(logged_sim, tmp_path, proc, took, EXPIRED.format(server=server))


def test_debug_shows_one_try_and_the_library_detail(logged_sim: SimulatedClusters,
                                                    tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(logged_sim, tmp_path, **{"tls-server-name": "api.wrong.example"})
    proc, _ = _smrun(tmp_path, "run", _plan(tmp_path, kubeconfig), "--debug")
    assert proc.returncode == 3, proc.stderr
    assert "retrying discover cluster target" not in proc.stderr, proc.stderr
    assert "SSLCertVerificationError" in proc.stderr and "Traceback" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == WRONG_NAME.format(
        server=logged_sim.url("target"), name="api.wrong.example")
