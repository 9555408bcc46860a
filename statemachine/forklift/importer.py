"""One ``smrun import forklift`` run: read, check, convert, write, and check what was written.

:func:`import_plan` is what the command line calls (and what a Python caller may call). It
returns the :class:`~statemachine.forklift.convert.Conversion` (with its warnings, which the
caller prints) and the paths written. The written plan is loaded again with smrun's own plan
loader before this returns, so an import that succeeds always gives a plan that passes
``smrun validate --offline`` (whose rendering of a simulated plan also needs the seed to hold the
plan's VMs: the seed is the user's); should it not, the files just written are removed and the problem
is reported (exit 2).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from statemachine.errors import DefinitionError, Problem
from statemachine.forklift.convert import Conversion, Options, convert, select_plan
from statemachine.forklift.credentials import HostRef, current_context
from statemachine.forklift.documents import load_files
from statemachine.forklift.inventory import INVENTORY_KINDS, Inventory
from statemachine.forklift.objectset import ObjectSet
from statemachine.forklift.output import write
from statemachine.forklift.shape import API_VERSION, FORKLIFT_KINDS

__all__ = ["ImportRequest", "ImportResult", "import_plan"]


@dataclass(frozen=True)
class ImportRequest:
    """What to import and where to write it."""

    output: Path
    files: Sequence[Path] = ()
    from_cluster: str | None = None
    """A kubeconfig context to read the Plan from (instead of ``files``)."""
    kubeconfig: Path | None = None
    plan: str | None = None
    namespace: str | None = None
    simulation: Path | None = None
    """A simulation seed: the plan gets ``spec.simulation`` instead of cluster references."""
    host_context: str | None = None
    """The context of Forklift's ``host`` cluster (file imports; default: the current context)."""


@dataclass(frozen=True)
class ImportResult:
    conversion: Conversion
    written: list[Path]


def import_plan(request: ImportRequest) -> ImportResult:
    """Import one Forklift Plan as described by ``request``. Raises ``SmrunError`` subclasses:
    ``DefinitionError`` (exit 2) for bad input, ``ClusterError``/``PreflightError`` (exit 3)
    when the cluster cannot be read."""
    seed = _seed(request)
    stem = request.output.stem or "plan"
    if request.from_cluster is not None:
        from statemachine.forklift.fromcluster import ClusterReader

        if not request.plan or not request.namespace:
            raise _usage("--from-cluster needs --namespace NS and --plan NAME")
        host = HostRef(_absolute(request.kubeconfig), request.from_cluster)
        with ClusterReader(context=request.from_cluster, kubeconfig=request.kubeconfig,
                           namespace=request.namespace) as reader:
            objects = reader.objects()
            plan = reader.plan(objects, request.plan)
            conversion = convert(plan, objects, reader.inventory(objects, plan),
                                 Options(stem, seed, host))
        origin = f"cluster {request.from_cluster}"
    else:
        if not request.files:
            raise _usage("give the Forklift YAML files, or --from-cluster CONTEXT")
        loaded = load_files(request.files, default_namespace=request.namespace or "")
        objects = ObjectSet(loaded, where="the input files")
        plan = select_plan(objects, request.plan, request.namespace)
        inventory = Inventory(o.data for o in loaded if o.kind in INVENTORY_KINDS)
        conversion = convert(plan, objects, inventory, Options(stem, seed, _host(request)))
        _report_unused(objects, conversion)
        origin = ", ".join(str(f) for f in request.files)
    header = (f"Imported by `smrun import forklift` from Forklift Plan {plan.namespace}/{plan.name}\n"
              f"({origin}). Check the warnings it printed: fields without an smrun equivalent\n"
              "were left out.")
    written = write(conversion, request.output, header)
    _self_check(request.output, written)
    return ImportResult(conversion, written)


def _seed(request: ImportRequest) -> str | None:
    if request.simulation is None:
        return None
    if not request.simulation.is_file():
        raise _usage(f"--simulation {request.simulation}: file not found")
    seed = request.simulation.resolve()
    relative = os.path.relpath(seed, request.output.resolve().parent)
    # Next to the plan (or below it): relative, so the folder can move; elsewhere: absolute.
    return str(seed) if relative.startswith("..") else f"./{relative}"


def _host(request: ImportRequest) -> HostRef | None:
    kubeconfig = _absolute(request.kubeconfig)
    if request.host_context:
        return HostRef(kubeconfig, request.host_context)
    # The objects were most likely exported from the current context (`kubectl get -o yaml`):
    # name that context in the plan, so the plan does not change meaning with the kubeconfig.
    context = current_context(kubeconfig)
    return HostRef(kubeconfig, context, guessed=True) if context else None


def _absolute(path: Path | None) -> Path | None:
    return Path(os.path.abspath(os.path.expanduser(path))) if path is not None else None


def _report_unused(objects: ObjectSet, conversion: Conversion) -> None:
    assert conversion.source is not None
    plan = conversion.source
    for obj in objects.unused():
        if obj.kind in INVENTORY_KINDS:
            continue  # given only so that ids can be resolved (inventory.py)
        if obj.api_version == API_VERSION and obj.kind in FORKLIFT_KINDS or obj.kind == "Secret":
            message = f"not used by Plan {plan.namespace}/{plan.name}; ignored"
        else:
            message = "not a kind smrun imports; ignored"
        conversion.warnings.append(obj.problem((), message))


def _self_check(output: Path, written: list[Path]) -> None:
    from statemachine.plan import load_plan

    try:
        load_plan(output)
    except DefinitionError as exc:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass
        problems = [Problem(p.file, p.path, f"the imported plan is not valid: {p.message}", p.line)
                    for p in exc.problems] or [Problem(str(output), "", f"the imported plan is not "
                                                                        f"valid: {exc}")]
        raise DefinitionError(str(problems[0]), problems) from None


def _usage(message: str) -> DefinitionError:
    problem = Problem("smrun import forklift", "", message)
    return DefinitionError(str(problem), [problem])
