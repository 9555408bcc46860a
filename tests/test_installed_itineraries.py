"""Providers install itineraries through their entry point (issue 15 item 1).

A small provider distribution is written into a temporary folder, as pip would install it: the
package (its provider class, an itinerary and its templates) and a ``.dist-info`` folder whose
``entry_points.txt`` registers it in the ``smrun.providers`` group. With that folder on the path,
``importlib.metadata`` finds the entry point as it would any installed package (no network, no
pip). Subprocess tests put it on ``PYTHONPATH``; in-process tests on ``sys.path``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.errors import DefinitionError
from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan
from statemachine.providers import (find_itinerary, installed_itineraries, load_provider,
                                    plan_with_itinerary)

ROOT = Path(__file__).resolve().parent.parent
CUSTOM = ROOT / "examples" / "custom"

PROVIDER = '''\
"""A test provider that installs the backup-and-restart flow under the name {name!r}."""
from pathlib import Path

HERE = Path(__file__).parent


class {cls}:
    def supports_path(self, path):
        return False

    def itinerary(self, path):
        raise LookupError(path)

    def itineraries(self):
        return {{{name!r}: HERE / "flows" / "backup-restart.yaml"}}
'''


def install_provider(site: Path, *, dist: str, module: str, provider: str, itinerary: str) -> Path:
    """Write distribution ``dist`` (package ``module``, entry point ``provider``) into ``site``;
    its provider installs examples/custom's flow, with its templates, as ``itinerary``."""
    package = site / module
    (package / "flows").mkdir(parents=True)
    (package / "__init__.py").write_text(PROVIDER.format(name=itinerary, cls="Provider"))
    shutil.copy(CUSTOM / "backup-restart.yaml", package / "flows" / "backup-restart.yaml")
    shutil.copytree(CUSTOM / "templates", package / "flows" / "templates")
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[smrun.providers]\n{provider} = {module}:Provider\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    return package


def plan_for(folder: Path, itinerary: str, *, plan_type: str = "") -> Path:
    """examples/custom's plan and seed, selecting the flow by installed name."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(CUSTOM / "seed.yaml", folder / "seed.yaml")
    text = (CUSTOM / "plan.yaml").read_text()
    line = "  itinerary: ./backup-restart.yaml"
    assert line in text
    text = text.replace(line, f"  itinerary: {itinerary}" + (f"\n  type: {plan_type}" if plan_type else ""))
    (folder / "plan.yaml").write_text(text)
    return folder / "plan.yaml"


def _itinerary_line(plan_path: Path) -> int:
    lines = plan_path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.startswith("  itinerary: "))


def smrun(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "statemachine", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=180)


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    # Each test installs its own copy of the packages: forget the imported ones.
    for name in [m for m in sys.modules if m.split(".")[0] in ("smrun_acme", "smrun_other")]:
        del sys.modules[name]


def test_an_installed_provider_lists_its_itinerary_with_its_provider(site: Path, tmp_path: Path) -> None:
    package = install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                               itinerary="acme-backup")
    proc = smrun(site, "itineraries", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0][:4] == ["NAME", "TYPE", "PROVIDER", "FILE"]
    listed = {r[0]: r[1:4] for r in rows[1:] if r and r[0] not in ("templates:", "copy")}
    assert listed["acme-backup"] == ["backup-restart", "acme",
                                     str(package / "flows" / "backup-restart.yaml")]
    assert listed["live"][:2] == ["live", "kubevirt"]
    # In process too: the entry point is found through importlib.metadata.
    assert {(e.name, e.provider) for e in installed_itineraries()} >= {
        ("acme-backup", "acme"), ("cold", "kubevirt"), ("live", "kubevirt"), ("warm", "kubevirt")}
    assert load_provider("acme").supports_path("live") is False


def test_a_plan_selects_an_installed_itinerary_by_name_and_runs_it(site: Path, tmp_path: Path) -> None:
    install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                     itinerary="acme-backup")
    plan_path = plan_for(tmp_path / "plan", "acme-backup")
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    assert itinerary.name == "backup-restart" and plan.type == "backup-restart"
    # its templates are the ones the provider ships beside the file
    assert itinerary.template_dir == site / "smrun_acme" / "flows" / "templates"
    proc = smrun(site, "run", str(plan_path), "--output", "json", "--state-dir",
                 str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = json.loads(proc.stdout.splitlines()[-1])
    assert (last["event"], last["completed"], last["failed"]) == ("run_finished", 2, 0)


def test_show_and_graph_take_an_installed_name(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                     itinerary="acme-backup")
    assert main(["itineraries", "show", "acme-backup"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# itinerary 'backup-restart': ") and "smrun_acme/flows/backup-restart.yaml" in out
    assert main(["graph", "acme-backup"]) == 0
    assert "StartVM" in capsys.readouterr().out


def test_export_copies_an_installed_itinerary_with_its_templates(
        site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``smrun itineraries export NAME DIR`` takes a provider's name too (issue 15 item 7): the
    copy points its spec.templates at the copied folder and validates on its own."""
    package = install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                               itinerary="acme-backup")
    out = tmp_path / "mine"
    assert main(["itineraries", "export", "acme-backup", str(out)]) == 0
    assert "itinerary 'acme-backup' with 1 templates" in capsys.readouterr().out
    copy = out / "backup-restart.yaml"
    text = copy.read_text()
    assert text.count("templates:") == 1 and "  templates: templates  " in text
    shipped = sorted(p.name for p in (package / "flows" / "templates").iterdir())
    assert sorted(p.name for p in (out / "templates").iterdir()) == shipped
    assert main(["validate", str(copy)]) == 0
    assert "is valid" in capsys.readouterr().out
    assert load_itinerary(copy).template_dir == (out / "templates").resolve()
    # the copy runs the same plan as the installed name
    plan_path = plan_for(tmp_path / "plan", str(copy))
    assert main(["render", str(plan_path)]) == 0
    copied = capsys.readouterr().out
    assert main(["render", str(plan_for(tmp_path / "plan2", "acme-backup"))]) == 0
    assert capsys.readouterr().out == copied


def test_a_type_that_contradicts_the_installed_itinerary_is_refused(site: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                     itinerary="acme-backup")
    plan_path = plan_for(tmp_path / "plan", "acme-backup", plan_type="live")
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'live' does not match the itinerary's migrationType 'backup-restart'" in err[0]


def test_an_unknown_name_lists_the_installed_ones(site: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                     itinerary="acme-backup")
    plan_path = plan_for(tmp_path / "plan", "acme-backups")
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    line = _itinerary_line(plan_path)
    assert err[0] == (f"{plan_path}:{line}: spec.itinerary: unknown itinerary 'acme-backups' (did "
                      "you mean 'acme-backup'? installed: acme-backup, cold, live, warm)")


def test_a_name_two_providers_install_is_a_clear_error(site: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    first = install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                             itinerary="backup")
    second = install_provider(site, dist="smrun-other", module="smrun_other", provider="other",
                              itinerary="backup")
    expected = (f"itinerary name 'backup' is installed by more than one provider: 'acme' "
                f"({first / 'flows' / 'backup-restart.yaml'}) and 'other' "
                f"({second / 'flows' / 'backup-restart.yaml'})")
    # The listing says so, exit 2, one line.
    proc = smrun(site, "itineraries", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
    # A plan that uses the name is refused before anything runs.
    plan_path = plan_for(tmp_path / "plan", "backup")
    assert main(["run", str(plan_path), "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{plan_path}:{_itinerary_line(plan_path)}: spec.itinerary: {expected}" in err[0]
    # Other names keep working.
    assert find_itinerary("live").provider == "kubevirt"


def test_a_provider_may_not_take_a_builtin_name(site: Path) -> None:
    install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme", itinerary="live")
    with pytest.raises(DefinitionError, match=r"'live' is installed by more than one provider: "
                                              r"'acme' \(.*\) and 'kubevirt' \(.*live.yaml\)"):
        find_itinerary("live")


def test_a_provider_that_installs_a_missing_file_is_named(site: Path) -> None:
    package = install_provider(site, dist="smrun-acme", module="smrun_acme", provider="acme",
                               itinerary="acme-backup")
    (package / "flows" / "backup-restart.yaml").unlink()
    with pytest.raises(DefinitionError, match=r"provider 'acme' installs itinerary 'acme-backup' "
                                              r"as .*backup-restart.yaml, which is not a file"):
        installed_itineraries()
