"""Layer contracts of ``statemachine/``, checked by reading the source (``ast``), never importing it.

The rules (product.md §2, model-codebases.md §7.1 and §7.9):

- only ``statemachine.k8s.client`` imports ``kubernetes``, and only inside functions, so that
  importing the module stays cheap;
- only modules under ``statemachine.engine`` import ``transitions``;
- the pure layers (loading, validating, rendering and evaluating definitions) import neither the
  engine, nor the ``kubernetes``-backed client, nor the simulator;
- ``statemachine.sim`` does not import the engine, and the engine does not import the simulator
  (the caller composes the clusters: ``statemachine.clusters``), nor the command-line side;
- no import cycles among the engine's modules;
- ``statemachine.k8s`` builds on nothing of smrun but the error tree; providers import neither
  the engine, nor the cluster layer, nor the simulator; ``errors``, ``resources`` and
  ``yamlsource`` are leaves;
- ``statemachine.cli`` imports the engine (through ``statemachine.commands``) only inside the
  command functions, and nothing ``cli``
  or ``import statemachine`` loads at import time reaches ``kubernetes``, ``transitions`` or the
  engine;
- ``statemachine.copier`` runs in a stock Python image: standard library only.

An import counts wherever it is written: at module level, inside a function (lazy), under
``if TYPE_CHECKING:``, or as ``importlib.import_module("literal")``. A lazy import is still a
dependency; it only changes *when* the cost is paid, which the eager-closure tests check
separately. Reviewed exceptions live in ``ALLOWED`` with the reason; an entry that is no longer
needed fails ``test_every_allowed_exception_is_still_needed`` so the list cannot go stale.

The end-to-end counterpart (``sys.modules`` after real commands) is at the bottom; the commands
already covered by ``tests/test_cli.py`` (``--help``, a simulated test plan) are not repeated.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "statemachine"
LIVE_EXAMPLE = ROOT / "examples" / "live" / "plan.yaml"

PURE = ("itinerary", "itinerary_checks", "expressions", "readiness", "predicates", "graph", "plan",
        "render", "context", "schema", "yamlsource", "templatekinds")
PURE_MODULES = tuple(f"statemachine.{name}" for name in PURE)
KUBERNETES_IMPORTERS = frozenset({"statemachine.k8s.client"})

# (importer, imported) pairs that break a rule on purpose, each with the reason. Reviewed, and
# reported to the owners; remove an entry when the import goes away.
ALLOWED: dict[tuple[str, str], str] = {
    # (importing module, imported module): why it is acceptable. Empty: no exceptions today.
}


@dataclass(frozen=True)
class Import:
    """One import statement (or ``importlib.import_module`` call) found in a module."""

    module: str          # the importing module, dotted
    target: str          # the imported module, dotted and absolute
    line: int
    lazy: bool           # inside a function body
    type_only: bool      # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        where = _path_of(self.module).relative_to(ROOT)
        how = " (lazy)" if self.lazy else " (TYPE_CHECKING)" if self.type_only else ""
        return f"{where}:{self.line}: imports {self.target}{how}"


def _path_of(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@cache
def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_package(module: str) -> bool:
    return _modules()[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Absolute targets of ``from X import a, b``: X itself, plus X.a when that is a module."""
    if node.level:
        package = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    targets = [base]
    targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in _modules()]
    return targets


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.depth = 0            # function nesting
        self.type_checking = 0    # ``if TYPE_CHECKING:`` nesting
        self.found: list[Import] = []

    def _add(self, target: str, node: ast.stmt | ast.expr) -> None:
        self.found.append(Import(self.module, target, node.lineno, self.depth > 0, self.type_checking > 0))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]
    visit_Lambda = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        if not guarded:
            self.generic_visit(node)
            return
        self.type_checking += 1
        for stmt in node.body:
            self.visit(stmt)
        self.type_checking -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for target in _resolve(self.module, node):
            if target != "__future__":
                self._add(target, node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(arg.value, node)
        self.generic_visit(node)


@cache
def _imports(module: str) -> tuple[Import, ...]:
    path = _modules()[module]
    collector = _Collector(module)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return tuple(collector.found)


def _all_imports() -> Iterator[Import]:
    for module in _modules():
        yield from _imports(module)


def _within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def _violations(imports: Iterable[Import], forbidden: Iterable[str]) -> list[str]:
    prefixes = tuple(forbidden)
    return [str(imp) for imp in imports
            if any(_within(imp.target, p) for p in prefixes) and (imp.module, imp.target) not in ALLOWED]


def _parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _eager_closure(start: str) -> dict[str, str]:
    """Every module loaded by importing ``start`` (module-level imports only, transitively).

    Maps each reached module (ours or external, as written) to the chain that reached it.
    """
    reached: dict[str, str] = {start: start}
    todo = [start]
    while todo:
        module = todo.pop()
        for target in [*_parents(module),
                       *(i.target for i in _imports(module) if not i.lazy and not i.type_only)]:
            if target in reached:
                continue
            reached[target] = f"{reached[module]} -> {target}"
            if target in _modules():
                todo.append(target)
    return reached


# -- the scanner itself ------------------------------------------------------------------------------


def test_the_scanner_sees_every_module_and_knows_lazy_from_eager_imports() -> None:
    modules = _modules()
    assert {"statemachine", "statemachine.cli", "statemachine.k8s.client", "statemachine.engine.runtime",
            "statemachine.sim.controllers"} <= set(modules)
    assert len(modules) > 50
    by_target = {i.target: i for i in _imports("statemachine.cli")}
    assert not by_target["statemachine.errors"].lazy
    assert by_target["statemachine.commands"].lazy
    # ``from statemachine.k8s import retry as _retry`` names a submodule, which is resolved.
    assert "statemachine.k8s.retry" in {i.target for i in _imports("statemachine.k8s.client")}
    # ``importlib.import_module("...")`` with a literal counts as an import.
    assert "statemachine.sim.controllers" in {i.target for i in _imports("statemachine.sim.controller")}


# -- third-party libraries stay in their layer ---------------------------------------------------------


def test_only_the_k8s_client_imports_kubernetes() -> None:
    importers = {i.module for i in _all_imports() if _within(i.target, "kubernetes")}
    assert importers <= KUBERNETES_IMPORTERS, _violations(
        (i for i in _all_imports() if i.module not in KUBERNETES_IMPORTERS), ["kubernetes"])
    assert importers, "statemachine.k8s.client no longer imports kubernetes: update this test"


def test_the_k8s_client_imports_kubernetes_only_inside_functions() -> None:
    eager = [str(i) for i in _imports("statemachine.k8s.client")
             if _within(i.target, "kubernetes") and not i.lazy]
    assert eager == []


def test_the_http_transport_below_kubernetes_is_touched_only_in_the_k8s_layer() -> None:
    # errormap recognises urllib3's connection errors (kubernetes' transport) without kubernetes.
    outside = [i for i in _all_imports() if not _within(i.module, "statemachine.k8s")]
    assert _violations(outside, ["urllib3"]) == []


def test_only_the_engine_imports_transitions() -> None:
    outside = [i for i in _all_imports() if not _within(i.module, "statemachine.engine")]
    assert _violations(outside, ["transitions"]) == []


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_layers_import_neither_engine_nor_client_nor_simulator(module: str) -> None:
    forbidden = ["statemachine.engine", "statemachine.k8s.client", "statemachine.sim",
                 "kubernetes", "transitions"]
    assert _violations(_imports(module), forbidden) == []


def test_the_simulator_does_not_import_the_engine() -> None:
    sim = [i for i in _all_imports() if _within(i.module, "statemachine.sim")]
    assert _violations(sim, ["statemachine.engine", "transitions"]) == []


def test_the_engine_imports_neither_the_simulator_nor_the_command_line() -> None:
    engine = [i for i in _all_imports() if _within(i.module, "statemachine.engine")]
    forbidden = ["statemachine.sim", "statemachine.clusters", "statemachine.commands",
                 "statemachine.cli"]
    assert _violations(engine, forbidden) == []


def test_no_import_cycles_inside_the_engine() -> None:
    # Runtime imports only (eager or lazy); ``if TYPE_CHECKING:`` imports never run.
    graph: dict[str, set[str]] = {}
    for i in _all_imports():
        if _within(i.module, "statemachine.engine") and _within(i.target, "statemachine.engine") \
                and not i.type_only and i.target != i.module:
            graph.setdefault(i.module, set()).add(i.target)
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < len(graph) + 1:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == []


def test_the_k8s_layer_builds_only_on_the_error_tree() -> None:
    # Below the engine and the definitions: a Cluster knows nothing of plans or itineraries.
    k8s = [i for i in _all_imports() if _within(i.module, "statemachine.k8s")]
    ours = {i.target for i in k8s if _within(i.target, "statemachine")}
    assert {t for t in ours if not _within(t, "statemachine.k8s")} == {"statemachine.errors"}


def test_providers_import_neither_engine_nor_client_nor_simulator() -> None:
    providers = [i for i in _all_imports() if _within(i.module, "statemachine.providers")]
    forbidden = ["statemachine.engine", "statemachine.k8s", "statemachine.sim", "kubernetes", "transitions"]
    assert _violations(providers, forbidden) == []


@pytest.mark.parametrize(("leaf", "allowed"), [
    ("statemachine.errors", set()),
    ("statemachine.resources", {"statemachine.errors"}),
    ("statemachine.yamlsource", {"statemachine.errors"}),
])
def test_leaf_modules_import_at_most_the_error_tree(leaf: str, allowed: set[str]) -> None:
    assert {i.target for i in _imports(leaf) if _within(i.target, "statemachine")} <= allowed


def test_the_copier_uses_the_standard_library_only() -> None:
    # It runs as `python /copier/delta.py` in a stock image: no statemachine, no third party.
    copier = [i for i in _all_imports() if _within(i.module, "statemachine.copier")]
    assert copier, "no copier modules found"
    foreign = [str(i) for i in copier if i.target.partition(".")[0] not in sys.stdlib_module_names]
    assert foreign == []


def test_every_allowed_exception_is_still_needed() -> None:
    present = {(i.module, i.target) for i in _all_imports()}
    assert [pair for pair in ALLOWED if pair not in present] == []


def test_no_allowed_exception_pulls_in_the_engine_or_client() -> None:
    # One test over every entry (none today), so an empty list is a pass, not a skipped test.
    heavy = ("kubernetes", "transitions", "statemachine.engine", "statemachine.k8s.client")
    for _, target in ALLOWED:
        closure = _eager_closure(target)
        assert [chain for t, chain in closure.items() if any(_within(t, h) for h in heavy)] == []


# -- what importing costs --------------------------------------------------------------------------------


def test_the_cli_imports_the_engine_only_inside_command_functions() -> None:
    heavy = ("statemachine.engine", "statemachine.commands", "statemachine.clusters")
    eager = [str(i) for i in _imports("statemachine.cli")
             if any(_within(i.target, h) for h in heavy) and not i.lazy]
    assert eager == []
    assert any(_within(i.target, "statemachine.commands") for i in _imports("statemachine.cli"))
    assert any(_within(i.target, "statemachine.engine") for i in _imports("statemachine.commands"))


@pytest.mark.parametrize("start", ["statemachine", "statemachine.cli", *PURE_MODULES])
def test_importing_a_front_module_loads_no_engine_client_or_simulator(start: str) -> None:
    closure = _eager_closure(start)
    heavy = ("kubernetes", "transitions", "statemachine.engine", "statemachine.k8s.client",
             "statemachine.sim")
    assert [chain for target, chain in closure.items() if any(_within(target, h) for h in heavy)] == []


def _imported_by_command(*argv: str) -> set[str]:
    """Modules ``python -X importtime -m statemachine ARGV`` imports (the real entry point).

    tests/test_cli.py reads ``sys.modules`` after ``cli.main`` for other commands; this reads
    the interpreter's own import log, so a module imported and dropped again is seen too.
    """
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "statemachine", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("|")[-1] for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {row.strip() for row in rows[1:]}  # rows[0] is the header


@pytest.mark.parametrize("argv", [
    ("validate", "--offline", str(LIVE_EXAMPLE)),
    ("render", str(LIVE_EXAMPLE)),
], ids=["validate-offline", "render"])
def test_the_live_example_validates_and_renders_without_kubernetes_or_transitions(
        argv: tuple[str, ...]) -> None:
    loaded = _imported_by_command(*argv)
    assert "statemachine.render" in loaded  # the command really did its work in this process
    heavy = [m for m in loaded if _within(m, "kubernetes") or _within(m, "transitions")
             or _within(m, "statemachine.engine")]
    assert heavy == []
