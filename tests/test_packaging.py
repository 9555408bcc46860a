"""The wheel ships itineraries, templates and schemas, and `smrun` finds them from any directory.

Builds a wheel of this checkout, installs it (no dependencies, no index) into a fresh venv whose
dependencies come from the running interpreter's site-packages through a ``.pth`` file (offline
and fast; the editable install's own ``.pth`` is not processed there, so it cannot shadow the
wheel), then runs the installed ``smrun`` from ``/``.
"""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_STATES = ["Started", "PreHook", "CreateEmptyDataVolumes", "EnsureResources", "CreateStandbyVM",
               "CreateTargetMigration", "WaitForTargetMigration", "CreateSourceMigration",
               "WaitForStateTransfer", "PostHook", "Completed"]

pytestmark = pytest.mark.slow


def _run(*argv: str | Path, cwd: Path | str = "/", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("packaging")
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                 "-w", tmp / "dist", ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = (tmp / "dist").glob("smrun-*.whl")
    env_dir = tmp / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", env_dir)
    assert made.returncode == 0, made.stderr
    python = env_dir / "bin" / "python"
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
                     wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    # Dependencies (jinja2, jsonschema, ...) from the test interpreter, after the venv's own packages.
    (Path(purelib) / "smrun-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield env_dir


def test_the_installed_package_is_the_wheel_not_the_checkout(venv: Path) -> None:
    proc = _run(venv / "bin" / "python", "-c", "import statemachine; print(statemachine.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(venv)


def test_smrun_itineraries_lists_the_builtins_from_anywhere(venv: Path) -> None:
    proc = _run(venv / "bin" / "smrun", "itineraries")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert {"cold", "warm", "live"} <= set(names)


def test_smrun_graph_live_draws_every_seed_state(venv: Path) -> None:
    proc = _run(venv / "bin" / "smrun", "graph", "live")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stateDiagram-v2")
    missing = [s for s in SEED_STATES if s not in proc.stdout]
    assert missing == []


def test_every_packaged_itinerary_validates(venv: Path) -> None:
    python = venv / "bin" / "python"
    folder = _run(python, "-c", "from statemachine.resources import data_dir; print(data_dir('itineraries'))")
    itineraries = Path(folder.stdout.strip())
    assert itineraries.is_relative_to(venv)
    for name in ("cold", "warm", "live"):
        proc = _run(venv / "bin" / "smrun", "validate", itineraries / f"{name}.yaml")
        assert proc.returncode == 0, proc.stderr
    schemas = _run(python, "-c", "from statemachine.resources import data_dir; "
                                 "print(sorted(p.name for p in data_dir('schemas').iterdir()))")
    assert "plan.schema.json" in schemas.stdout and "itinerary.schema.json" in schemas.stdout


def test_help_works_from_the_installed_script(venv: Path) -> None:
    proc = _run(venv / "bin" / "smrun", "--help")
    assert proc.returncode == 0 and "itineraries" in proc.stdout


def test_the_simulator_schema_data_is_in_the_wheel(venv: Path) -> None:
    code = ("from statemachine.sim import schemas; d = schemas.data(); "
            "print(len(d['kinds']), 'kubevirt.io/v1/VirtualMachine' in d['kinds'], "
            "schemas.__file__)")
    proc = _run(venv / "bin" / "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    count, has_vm, where = proc.stdout.split()
    assert int(count) >= 10 and has_vm == "True" and Path(where).is_relative_to(venv)


def test_operator_manifests_derive_the_role_from_an_installed_wheel(venv: Path) -> None:
    """The ClusterRole is derived from the installed itineraries and their templates, which ship
    in the wheel: an admin who installed smrun with pip can print the install (optional states'
    kinds included: the live Submariner ServiceExports)."""
    proc = _run(venv / "bin" / "smrun", "operator", "manifests")
    assert proc.returncode == 0, proc.stderr
    assert "kind: ClusterRole" in proc.stdout and "virtualmachineinstancemigrations" in proc.stdout
    assert "serviceexports" in proc.stdout and "virtualmachinepreferences" in proc.stdout
