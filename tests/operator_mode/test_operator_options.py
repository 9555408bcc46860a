"""`smrun operator`'s command line (issue 12, item 2): which cluster, which namespaces, which id.

The options reach ``run_operator`` as parsed here (it is replaced by a recorder: the running
operator is tested end to end in test_operator_e2e.py and test_in_cluster.py).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.operator import app
from statemachine.operator.options import OperatorOptions

pytest.importorskip("kopf")


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[OperatorOptions]:
    got: list[OperatorOptions] = []
    monkeypatch.setattr(app, "run_operator", lambda options: got.append(options) or 0)
    monkeypatch.delenv("SMRUN_OPERATOR_ID", raising=False)
    return got


def test_the_options_reach_the_operator(seen: list[OperatorOptions], tmp_path: Path) -> None:
    assert main(["operator", "--kubeconfig", str(tmp_path / "kc"), "--context", "hub",
                 "--namespace", "a", "--namespace", "b", "--id", "replica-a",
                 "--state-dir", str(tmp_path / "s"), "--metrics-port", "9090",
                 "--health-port", "9091", "--lease-seconds", "6"]) == 0
    o = seen[-1]
    assert (o.kubeconfig, o.context, o.namespaces, o.operator_id) == \
        (tmp_path / "kc", "hub", ("a", "b"), "replica-a")
    assert (o.state_dir, o.metrics_port, o.health_port, o.lease_seconds) == \
        (tmp_path / "s", 9090, 9091, 6)


def test_defaults_in_cluster_all_namespaces_and_hostname_pid(
        seen: list[OperatorOptions], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["operator", "--all-namespaces"]) == 0
    o = seen[-1]
    # No --kubeconfig/--context: in-cluster configuration (test_in_cluster.py), else $KUBECONFIG.
    assert (o.kubeconfig, o.context, o.namespaces) == (None, None, ())
    assert o.operator_id == f"{socket.gethostname()}-{os.getpid()}"
    assert (o.metrics_port, o.health_port) == (None, None)
    monkeypatch.setenv("SMRUN_OPERATOR_ID", "smrun-operator-7c9d-x2kq")  # the Deployment's
    assert main(["operator", "--all-namespaces"]) == 0
    assert seen[-1].operator_id == "smrun-operator-7c9d-x2kq"


@pytest.mark.parametrize(("argv", "words"), [
    (["operator"], "give --namespace NS (repeatable) or --all-namespaces"),
    (["operator", "--namespace", "a", "--all-namespaces"], "exclude each other"),
])
def test_namespaces_are_chosen_one_way(seen: list[OperatorOptions], argv: list[str], words: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2 and seen == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
