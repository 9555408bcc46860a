"""Helpers for the ``smrun import forklift`` tests.

- ``DATA``: tests/data/forklift, the Forklift object sets written for these tests;
- ``run_import(*args, cwd=...)``: ``smrun import forklift ARGS`` through ``statemachine.cli.main``
  in this process, returning ``(exit code, stdout, stderr)``;
- ``load(path)``: a YAML file as data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.cli import main

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "forklift"
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _no_user_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host provider's context defaults to the current context of $KUBECONFIG: never the
    developer's own kubeconfig in these tests."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))


def run_import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["import", "forklift", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def validate_offline(capsys: pytest.CaptureFixture[str], plan: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["validate", "--offline", str(plan)])
    out = capsys.readouterr()
    return code, out.out, out.err


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@pytest.fixture
def kubectl_for(tmp_path: Path) -> Any:
    """``kubectl_for(sim)(*args, context=..., check=..., input=...)``: kubectl against any
    simulator a test started itself (``kubectl`` is bound to the ``sim`` fixture's)."""
    from tests.conftest import KUBECTL, run_kubectl

    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed")
    cache = tmp_path / "kubectl-cache"
    cache.mkdir(exist_ok=True)

    def bind(sim: Any) -> Any:
        def run(*args: str, **kw: Any) -> Any:
            return run_kubectl(sim, cache, *args, **kw)
        return run
    return bind
