"""The ``smrun`` command line: parse arguments, call the library, print, map errors to exit codes.

Commands (product.md §5)::

    smrun PLAN                          same as `smrun run PLAN`
    smrun run PLAN [--output text|json] [--state-dir DIR] [--max-in-flight N] [--vm NAME ...]
    smrun validate PLAN [--offline | --server-dry-run]   static checks, render (simulated plans),
                                        then cluster preflight (and the first states' writes
                                        with dryRun=All);
                                        given an itinerary file, checks that itinerary alone
    smrun render PLAN [--vm NAME ...] [--show-secrets]
    smrun diff PLAN [--state S] [--vm NAME ...]   the first states against the live objects
    smrun graph TYPE|FILE [--plan PLAN --vm NAME]
    smrun status PLAN [--output text|json] [--state-dir DIR]
    smrun cancel PLAN [--vm NAME ...] [--state-dir DIR]
    smrun cutover PLAN --at TIME|now [--vm NAME ...] [--state-dir DIR]
    smrun status|cancel|cutover --cluster CONTEXT [--kubeconfig F] [-n NS] PLAN_NAME ...
                                        the same on a Plan object (operator mode)
    smrun itineraries [show NAME | export NAME DIR | --copy NAME DIR]
    smrun import forklift FILE... -o PLAN       a Forklift Plan (+ maps, hooks, providers) as a plan
    smrun import forklift --from-cluster CONTEXT --namespace NS --plan NAME -o PLAN
    smrun sim serve ...                 delegated to statemachine.sim.serve.main
    smrun operator [--kubeconfig F] [--context C] [--namespace NS ... | --all-namespaces] ...
    smrun operator manifests [--namespace NS] [--image IMAGE]

Exit codes come from ``SmrunError.exit_code`` (0 ok, 1 a VM failed, 2 invalid input, 3 preflight
refused or cluster unreachable, 4 the state directory or journal cannot be used; 130
interrupted); anything else that escapes is a bug in smrun: one line with the ``--debug`` hint
and exit 70 (``EXIT_INTERNAL``), never 1, which means "a VM failed". Errors print as one line
each on stderr, with a traceback only under ``--debug``.

Only this module configures logging. Heavy modules are imported inside the command that needs
them: ``smrun --help``, ``validate --offline``, ``render`` of a simulated plan, ``graph`` and
``itineraries`` never import the ``kubernetes`` client (a test checks ``sys.modules``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from statemachine import __version__, gcpolicy
from statemachine.errors import EXIT_INTERNAL, SmrunError, UsageError

COMMANDS = ("run", "validate", "render", "diff", "graph", "status", "cancel", "cutover", "itineraries",
            "import", "sim", "operator")
EXIT_INTERRUPTED = 130


# The interpreter's GIL switch interval in an smrun process of its own: 1 ms, not CPython's 5 ms.
# `smrun run`'s loop thread hands every request to an I/O thread (and a create's fsync to the
# group commit's); a thread woken while another holds the GIL waits up to the interval before it
# may ask for it, so each hand-over cost up to 5 ms at 100 VMs: intent -> create sent was 41-45 ms
# at p90 with 5 ms and 15-19 ms with 1 ms (three interleaved rounds, docs/performance.md).
# In-process callers of main() (tests, embedders) keep their own interval.
SWITCH_INTERVAL = 0.001


def entry() -> int:
    """The ``smrun`` console script and ``python -m statemachine``: :func:`main` in a process of
    its own, with the collector's start-up and exit schedule (:mod:`statemachine.gcpolicy`) and
    a short GIL switch interval (``SWITCH_INTERVAL``)."""
    gcpolicy.pause()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        return main()
    finally:
        gcpolicy.at_exit()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args_list = _insert_default_command(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args_list
    try:
        parser = _parser()
        positional = [a for a in args_list if not a.startswith("-")]
        if positional[:1] == ["sim"]:
            # The simulator parses its own options; `--debug` before `sim` is ours.
            gcpolicy.settle()
            return _sim(args_list[args_list.index("sim") + 1:])
        args = parser.parse_args(args_list)
        _configure_logging(debug)
        handler: Callable[[argparse.Namespace], int] = args.handler
        if handler not in (_cmd_run, _cmd_validate):
            gcpolicy.settle()  # those two settle once their clusters are connected
        return handler(args)
    except KeyboardInterrupt:
        print("smrun: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`smrun status PLAN | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SmrunError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc)
        return exc.exit_code
    except _ArgparseExit as exc:
        return exc.code
    except Exception as exc:  # a bug: one line unless --debug, never a bare traceback
        if debug:
            traceback.print_exc()
        else:
            text = " ".join(str(exc).split())[:300]
            print(f"smrun: internal error: {type(exc).__name__}: {text} "
                  "(run with --debug for details)", file=sys.stderr)
        return EXIT_INTERNAL


def _print_error(exc: SmrunError) -> None:
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(line, file=sys.stderr)


class _ArgparseExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that returns exit codes instead of calling ``sys.exit`` (usage errors exit 2)."""

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            print(message, file=sys.stderr, end="")
        raise _ArgparseExit(status)

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _insert_default_command(argv: list[str]) -> list[str]:
    """``smrun [opts] PLAN ...`` means ``smrun [opts] run PLAN ...``."""
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            continue
        if arg not in COMMANDS:
            return [*argv[:i], "run", *argv[i:]]
        break
    return argv


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: a subcommand's default must not reset a --debug given before the command.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logs")

    parser = _Parser(prog="smrun", parents=[common],
                     description="Migrate KubeVirt VMs between clusters with declarative state machines.",
                     epilog="`smrun PLAN` is the same as `smrun run PLAN`.")
    parser.add_argument("--version", action="version", version=f"smrun {__version__}")
    parser.set_defaults(handler=lambda _args: _usage(parser))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help_text: str,
                plan: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(command=name)
        if plan:
            p.add_argument("plan", type=Path, metavar="PLAN", help="the plan file")
        p.set_defaults(handler=handler)
        return p

    p = command("run", _cmd_run, "migrate the plan's VMs (resumes an interrupted run)")
    p.add_argument("--output", choices=("text", "json"), default="text",
                   help="text: a live progress table; json: one event per line")
    p.add_argument("--state-dir", type=Path, default=Path(".smrun"), help="journal directory (default .smrun)")
    p.add_argument("--max-in-flight", type=_positive_int, default=None, metavar="N",
                   help="VMs migrated at once (default: the plan's settings.maxInFlight)")
    p.add_argument("--vm", action="append", metavar="NAME", help="only this VM (repeatable; NAME or NS/NAME)")
    p.add_argument("--resync", type=_positive_float, default=None, metavar="SECONDS",
                   help="re-check a wait that saw no watch event after this long (default: 2)")
    p.add_argument("--new-run", action="store_true",
                   help="start a new run of a plan that has a journal (the old journal is kept "
                        "beside it as journal-<run id>.jsonl)")

    p = command("validate", _cmd_validate,
                "check the plan, its itinerary and templates; then preflight against the clusters "
                "(given an itinerary file instead of a plan: check that itinerary)")
    p.add_argument("--offline", action="store_true", help="static checks only: do not contact the clusters")
    p.add_argument("--server-dry-run", action="store_true",
                   help="also send the first states' writes with dryRun=All, so the clusters' "
                   "schemas and admission webhooks judge them (nothing is stored)")

    p = command("render", _cmd_render, "print every manifest each state would apply (multi-document YAML)")
    p.add_argument("--vm", action="append", metavar="NAME", help="only this VM (repeatable; NAME or NS/NAME)")
    p.add_argument("--show-secrets", action="store_true", help="print Secret data instead of masking it")

    p = command("diff", _cmd_diff, "show what the states that run first would create or change, "
                "as a unified diff against the live objects (read only; exit 1 if anything differs)")
    p.add_argument("--state", metavar="S", help="only this state")
    p.add_argument("--vm", action="append", metavar="NAME", help="only this VM (repeatable; NAME or NS/NAME)")

    p = command("graph", _cmd_graph, "draw an itinerary as a Mermaid stateDiagram-v2", plan=False)
    p.add_argument("itinerary", metavar="TYPE|FILE", help="a built-in itinerary name (cold, warm, live) or a file")
    p.add_argument("--plan", type=Path, help="mark the states a plan's predicates switch off (needs --vm)")
    p.add_argument("--vm", metavar="NAME", help="the VM of --plan whose predicates are used")

    def on_cluster(p: argparse.ArgumentParser) -> None:
        # With --cluster, PLAN is the name of a Plan object the operator runs (operator/remote.py).
        p.add_argument("--cluster", metavar="CONTEXT", help="act on the Plan object named PLAN "
                       "in this kubeconfig context's cluster (operator mode) instead of a file")
        p.add_argument("--kubeconfig", type=Path, metavar="FILE",
                       help="with --cluster (default $KUBECONFIG, ~/.kube/config)")
        p.add_argument("-n", "--namespace", metavar="NS", type=_namespace,
                       help="with --cluster: the Plan's namespace (default: the context's)")

    p = command("status", _cmd_status, "per-VM state from the journal (or, with --cluster, "
                "from a Plan object's status)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--state-dir", type=Path, default=Path(".smrun"))
    on_cluster(p)

    p = command("cancel", _cmd_cancel, "cancel the migration of the plan's VMs (or only --vm)")
    p.add_argument("--vm", action="append", metavar="NAME", help="only this VM (repeatable)")
    p.add_argument("--state-dir", type=Path, default=Path(".smrun"))
    on_cluster(p)

    p = command("cutover", _cmd_cutover, "set or move a warm migration's cutover time, also while it runs")
    p.add_argument("--at", required=True, metavar="TIME",
                   help="RFC 3339 time with an offset (2026-12-01T02:00:00Z), or 'now'")
    p.add_argument("--vm", action="append", metavar="NAME", help="only this VM (repeatable)")
    p.add_argument("--state-dir", type=Path, default=Path(".smrun"))
    on_cluster(p)

    p = command("itineraries", _cmd_itineraries, "list the installed itineraries (the built-ins "
                "and those providers install, with their files), or copy one with its templates",
                plan=False)
    p.add_argument("--copy", nargs=2, metavar=("NAME", "DIR"),
                   help="write the installed itinerary NAME, the fragments it includes and the "
                   "templates it uses into DIR, ready to edit and use through a plan's spec.itinerary")
    p.add_argument("action", nargs="*", metavar="show NAME | export NAME DIR",
                   help="show: print an itinerary (an installed name or a file) with its parameters "
                   "and the fragments it includes; export: the same as --copy NAME DIR")

    p = command("import", _cmd_import, "write an smrun plan from another tool's "
                "objects: `smrun import forklift --help`", plan=False)
    p.set_defaults(import_parser=p)
    formats = p.add_subparsers(title="formats", metavar="FORMAT", parser_class=_Parser)
    help_text = ("convert a Forklift (MTV) Plan with its Providers, NetworkMap, StorageMap and Hooks "
                 "into an smrun plan; fields without an smrun equivalent are listed on stderr")
    f = formats.add_parser("forklift", parents=[common], help=help_text, description=help_text)
    f.add_argument("files", nargs="*", type=Path, metavar="FILE",
                   help="YAML/JSON files: objects, multi-document, or `kubectl get -o yaml` lists")
    f.add_argument("-o", "--output", type=Path, required=True, metavar="PLAN",
                   help="the smrun plan to write; hook playbooks and kubeconfigs go next to it")
    f.add_argument("--from-cluster", metavar="CONTEXT", help="read the Plan from this kubeconfig context")
    f.add_argument("--kubeconfig", type=Path, metavar="FILE",
                   help="kubeconfig of --from-cluster / --host-context (default $KUBECONFIG, ~/.kube/config)")
    f.add_argument("-n", "--namespace", metavar="NS", help="the Plan's namespace (and the default "
                   "namespace of objects in FILEs that have none)")
    f.add_argument("--plan", metavar="NAME", help="the Plan to import (needed when there are several)")
    f.add_argument("--simulation", type=Path, metavar="SEED",
                   help="write a plan that runs on simulated clusters seeded from SEED (no credentials)")
    f.add_argument("--host-context", metavar="CONTEXT", help="FILE imports: the context of "
                   "Forklift's own ('host') cluster (default: the current context)")
    f.set_defaults(handler=_cmd_import_forklift)
    p = command("operator", _cmd_operator, "run smrun as a Kubernetes controller of Plan "
                "objects (plans.smrun.io); `smrun operator manifests` prints the install",
                plan=False)
    p.add_argument("--kubeconfig", type=Path, metavar="FILE",
                   help="the cluster the Plans live in (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--context", metavar="CONTEXT", help="kubeconfig context")
    p.add_argument("--namespace", action="append", metavar="NS", dest="namespaces", type=_namespace,
                   help="watch Plans in this namespace (repeatable)")
    p.add_argument("--all-namespaces", "-A", action="store_true",
                   help="watch Plans in every namespace")
    p.add_argument("--id", metavar="NAME", default=None,
                   help="this replica's name in status.operator (default $SMRUN_OPERATOR_ID, "
                   "else hostname-pid)")
    p.add_argument("--state-dir", type=Path, default=Path(".smrun-operator"),
                   help="local scratch: discovery caches, a run's kubeconfigs from Secrets "
                        "(default .smrun-operator; the journals are in the cluster)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus /metrics on this port")
    p.add_argument("--health-port", type=int, default=None, metavar="PORT",
                   help="serve /healthz and /readyz on this port")
    p.add_argument("--lease-seconds", type=int, default=15, metavar="SECONDS",
                   help="a replica holds a Plan's Lease this long without renewing it before "
                   "another takes over (default 15; 0: no Leases, one replica only)")
    ops = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND", parser_class=_Parser)
    m = ops.add_parser("manifests", parents=[common], help="print the CRD, RBAC, Deployment and "
                       "PodDisruptionBudget (YAML) to install the operator")
    m.add_argument("--namespace", default=None, metavar="NS", dest="install_namespace",
                   type=_namespace,
                   help="namespace of the operator (default smrun-system)")
    m.add_argument("--image", default=None, metavar="IMAGE", help="the operator's image")
    m.set_defaults(handler=_cmd_operator_manifests)
    # `sim serve` is parsed by the simulator itself (see main); this entry is for --help only.
    sub.add_parser("sim", help="simulated clusters: `smrun sim serve --help`", add_help=False)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _namespace(text: str) -> str:
    """A namespace name as Kubernetes accepts it (a DNS-1123 label)."""
    if not _DNS_LABEL.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace name (lower case letters, digits and '-', at most 63)")
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _configure_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug
                        else "smrun: %(levelname)s: %(message)s", stream=sys.stderr)
    # transitions logs every callback at INFO; only useful when debugging the engine itself.
    logging.getLogger("transitions").setLevel(logging.DEBUG if debug else logging.WARNING)
    # urllib3's own warnings (its retries, its connection pool) are the reprs of its objects, for
    # whoever debugs smrun's transport: what an admin needs of a failed request is smrun's line
    # (statemachine.k8s.retry, the final error). smrun no longer lets urllib3 retry failed
    # connections (k8s/client.py, _library_retries); this keeps any other of its lines out too.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if debug else logging.ERROR)


# -- commands ----------------------------------------------------------------------------------

def _load(plan_path: Path) -> tuple[Any, Any]:
    from statemachine.plan import load_plan
    from statemachine.providers import plan_with_itinerary

    return plan_with_itinerary(load_plan(plan_path))


def _cmd_run(args: argparse.Namespace) -> int:
    from statemachine import commands
    from statemachine.plan import load_plan

    plan = load_plan(args.plan)
    _check_vms(plan, args.vm)
    # The journal is locked and the clusters are being connected while the itinerary loads
    # (commands.start: the first request goes out before the itinerary is read).
    started = commands.start(plan, state_dir=args.state_dir)
    try:
        from statemachine.providers import plan_with_itinerary

        plan, itinerary = plan_with_itinerary(plan)
    except BaseException:
        started.close()
        raise
    return commands.run(plan, itinerary, state_dir=args.state_dir,
                        max_in_flight=args.max_in_flight, vms=args.vm, output=args.output,
                        stream=sys.stdout, resync=args.resync, new_run=args.new_run,
                        started=started)


def _cmd_validate(args: argparse.Namespace) -> int:
    from statemachine import yamlsource

    doc = yamlsource.load(args.plan)
    if isinstance(doc.data, dict) and doc.data.get("kind") == "Itinerary":
        # Itinerary authors validate their copy directly: schema and semantic checks.
        from statemachine.itinerary import load_itinerary

        itinerary = load_itinerary(args.plan)
        _print_warnings(itinerary)
        print(f"{args.plan}: itinerary {itinerary.name!r} is valid ({len(itinerary.states)} states)")
        return 0
    from statemachine.plan import load_plan

    plan = load_plan(args.plan)
    clusters = None
    if not args.offline and plan.simulation is None:
        # Connecting only reads: it goes on while the itinerary loads and renders (see
        # clusters.connect_ahead); preflight takes the connection, or its error, below.
        from statemachine.clusters import connect_ahead

        clusters = connect_ahead(plan)
    try:
        return _validate_plan(args, plan, clusters)
    finally:
        if clusters is not None:
            clusters.abandon()  # nothing once preflight took it


def _validate_plan(args: argparse.Namespace, plan: Any, clusters: Any) -> int:
    """``validate`` of a loaded plan; ``clusters``: its ``clusters.Pending`` connection or None."""
    from statemachine.providers import plan_with_itinerary
    from statemachine.render import render_plan
    from statemachine.sim.offline import seed_reads

    plan, itinerary = plan_with_itinerary(plan)
    _print_warnings(itinerary)
    rendered = 0
    if plan.simulation is not None:
        # Simulated plans render completely offline: reads come from the seed file, and a kind
        # the simulated clusters do not serve is found here already (one line, exit 2).
        from statemachine.kindorigin import render_served

        reads = seed_reads(plan)
        rendered = len(render_served(itinerary, lambda: render_plan(plan, itinerary, reads), reads))
    print(f"{plan.path}: plan {plan.name!r} is valid ({len(plan.vms)} VMs, itinerary "
          f"{itinerary.name!r}" + (f", {rendered} manifests rendered" if plan.simulation else "") + ")")
    if args.offline and args.server_dry_run:
        raise UsageError("smrun validate: --offline and --server-dry-run exclude each other")
    if args.offline:
        return 0
    from statemachine import commands

    code = commands.preflight(plan, itinerary, stream=sys.stdout, clusters=clusters)
    if args.server_dry_run:
        sys.stdout.flush()
        code = commands.server_dry_run(plan, itinerary)
    return code


def _print_warnings(itinerary: Any) -> None:
    """The itinerary's warnings (a ``step`` out of pipeline order): one line each, on stderr."""
    for warning in itinerary.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _cmd_render(args: argparse.Namespace) -> int:
    from statemachine.render import format_manifests, render_plan
    from statemachine.sim.offline import seed_reads

    plan, itinerary = _load(args.plan)
    _check_vms(plan, args.vm)
    if plan.simulation is None:
        # The reads come from the plan's clusters (read only); a simulated plan's from its seed.
        from statemachine import commands

        manifests = commands.render_live(plan, itinerary, vms=args.vm)
    else:
        manifests = render_plan(plan, itinerary, seed_reads(plan), vms=args.vm)
    sys.stdout.write(format_manifests(manifests, show_secrets=args.show_secrets))
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from statemachine import commands

    plan, itinerary = _load(args.plan)
    _check_vms(plan, args.vm)
    return commands.diff(plan, itinerary, vms=args.vm, state=args.state)


def _cmd_graph(args: argparse.Namespace) -> int:
    from statemachine.graph import mermaid
    from statemachine.itinerary import load_itinerary
    from statemachine.providers import find_itinerary

    source = Path(args.itinerary)
    path = source if (source.suffix in (".yaml", ".yml") or "/" in args.itinerary) else \
        find_itinerary(args.itinerary).path
    itinerary = load_itinerary(path)
    skipped: frozenset[str] = frozenset()
    if args.plan is not None or args.vm is not None:
        if args.plan is None or args.vm is None:
            raise UsageError("smrun graph: --plan and --vm go together")
        from statemachine.plan import load_plan
        from statemachine.render import disabled_states
        from statemachine.sim.offline import seed_reads

        plan = load_plan(args.plan)
        _check_vms(plan, [args.vm])
        reads = seed_reads(plan) if plan.simulation is not None else None
        skipped = frozenset(disabled_states(plan, itinerary, plan.vm(args.vm), reads))
    sys.stdout.write(mermaid(itinerary, skipped=skipped))
    return 0


def _on_cluster(args: argparse.Namespace) -> Any:
    """With ``--cluster``: the Plan object named PLAN (a context manager); else ``None``."""
    if args.cluster is None:
        if args.kubeconfig is not None or args.namespace is not None:
            raise UsageError(f"smrun {args.command}: --kubeconfig and --namespace go with "
                             "--cluster CONTEXT")
        return None
    name = str(args.plan)
    if not _DNS_SUBDOMAIN.match(name):
        raise UsageError(f"smrun {args.command} --cluster: {name!r} is not a Plan name")
    from statemachine.operator.remote import plan_object

    if not getattr(args, "debug", False):
        # One request, one answer: the retries' warnings would bury the one line that matters.
        for logger_name in ("urllib3", "statemachine.k8s"):
            logging.getLogger(logger_name).setLevel(logging.ERROR)
    return plan_object(args.cluster, name, kubeconfig=args.kubeconfig, namespace=args.namespace)


def _cmd_status(args: argparse.Namespace) -> int:
    remote = _on_cluster(args)
    if remote is not None:
        with remote as obj:
            rows = obj.status_rows()
    else:
        from statemachine import commands
        from statemachine.plan import load_plan

        rows = commands.status(load_plan(args.plan), state_dir=args.state_dir)
    if args.output == "json":
        for row in rows:
            print(json.dumps(row, sort_keys=True, default=str))
        return 0
    _print_status(rows, sys.stdout)
    return 0


def _print_status(rows: Sequence[dict[str, Any]], out: IO[str]) -> None:
    """A table of VMs, then each VM's outputs: scalars as ``name: value`` (long values cut), and
    a list of records (the warm itinerary's ``rounds``) one record per line, so every precopy
    round shows with its bytes."""
    _print_table([{k: v for k, v in row.items() if k != "outputs"} for row in rows], out)
    for row in rows:
        outputs = row.get("outputs") or {}
        if not outputs:
            continue
        print(f"\n{row.get('vm')}:", file=out)
        for name, value in sorted(outputs.items()):
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                print(f"  {name}:", file=out)
                for item in value:
                    print("    " + "  ".join(f"{k}={_short(v)}" for k, v in item.items()), file=out)
            else:
                print(f"  {name}: {_short(value)}", file=out)


def _short(value: Any, limit: int = 60) -> str:
    text = _cell(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cmd_cancel(args: argparse.Namespace) -> int:
    remote = _on_cluster(args)
    if remote is not None:
        if args.vm:
            raise UsageError("smrun cancel --cluster: a Plan object is canceled as a whole "
                             "(spec.cancel); --vm is for plan files")
        with remote as obj:
            print(obj.cancel())
        return 0
    from statemachine.plan import load_plan

    plan = load_plan(args.plan)
    _check_vms(plan, args.vm)
    from statemachine import commands

    return commands.cancel(plan, state_dir=args.state_dir, vms=args.vm, stream=sys.stdout)


def _cmd_cutover(args: argparse.Namespace) -> int:
    remote = _on_cluster(args)
    if remote is not None:
        with remote as obj:
            print(obj.cutover(args.at, args.vm or ()))
        return 0
    from statemachine.cutover import set_cutover
    from statemachine.plan import load_plan

    plan = load_plan(args.plan)
    _check_vms(plan, args.vm)
    print(set_cutover(plan, state_dir=args.state_dir, at=args.at, vms=args.vm))
    return 0


def _cmd_itineraries(args: argparse.Namespace) -> int:
    from statemachine.itinerary import load_itinerary
    from statemachine.providers import installed_itineraries

    action = list(getattr(args, "action", None) or [])
    if action[:1] == ["show"] and len(action) == 2:
        from statemachine.itinerary_copy import describe

        sys.stdout.write(describe(action[1]))
        return 0
    if action[:1] == ["export"] and len(action) == 3:
        args.copy = action[1:]
    elif action:
        raise UsageError("usage: smrun itineraries [show NAME | export NAME DIR | --copy NAME DIR]")
    if getattr(args, "copy", None):
        from statemachine.itinerary_copy import copy_itinerary

        name, folder = args.copy
        target, templates, fragments = copy_itinerary(name, Path(folder))
        included = (f" and the fragments it includes ({', '.join(str(f) for f in fragments)})"
                    if fragments else "")
        print(f"{target}: itinerary {name!r} with {len(templates)} templates in "
              f"{target.parent / 'templates'}{included}; use it with `spec.itinerary: {target}`")
        return 0
    rows = []
    builtin_templates = None
    for entry in installed_itineraries():  # the built-ins are the kubevirt provider's
        itinerary = load_itinerary(entry.path)
        if entry.provider == "kubevirt":
            builtin_templates = itinerary.template_dir
        rows.append({"NAME": entry.name, "TYPE": str(itinerary.migration_type or ""),
                     "PROVIDER": entry.provider, "FILE": str(entry.path),
                     "DESCRIPTION": str(itinerary.description or "")})
    _print_table(rows, sys.stdout)
    if builtin_templates is not None:
        print(f"templates: {builtin_templates}\n"
              "copy one to edit: smrun itineraries --copy NAME DIR")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """``smrun import`` without a format: its usage, exit 2."""
    parser: argparse.ArgumentParser = args.import_parser
    return _usage(parser)


def _cmd_import_forklift(args: argparse.Namespace) -> int:
    from statemachine.forklift.importer import ImportRequest, import_plan

    if args.from_cluster is not None and args.files:
        raise UsageError("smrun import forklift: give FILEs or --from-cluster CONTEXT, not both")
    if args.from_cluster is not None and args.host_context is not None:
        raise UsageError("smrun import forklift: --host-context is for FILE imports (with "
                         "--from-cluster, the host cluster is CONTEXT)")
    result = import_plan(ImportRequest(
        output=args.output, files=tuple(args.files), from_cluster=args.from_cluster,
        kubeconfig=args.kubeconfig, plan=args.plan, namespace=args.namespace,
        simulation=args.simulation, host_context=args.host_context))
    for warning in result.conversion.warnings:
        print(warning, file=sys.stderr)
    plan = result.conversion.plan
    source = result.conversion.source
    print(f"wrote {result.written[0]}: plan {plan['metadata']['name']!r} ({plan['spec']['type']}, "
          f"{len(plan['spec']['vms'])} VMs) from Forklift Plan "
          f"{source.namespace if source else ''}/{source.name if source else ''}")
    for path in result.written[1:]:
        what = "credentials, mode 0600" if path.suffix == ".kubeconfig" else "hook playbook"
        print(f"wrote {path} ({what})")
    if result.conversion.warnings:
        print(f"{len(result.conversion.warnings)} warnings (on stderr): fields without an smrun "
              "equivalent were left out")
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from statemachine.operator.options import OperatorOptions

    if args.all_namespaces and args.namespaces:
        raise UsageError("smrun operator: --namespace and --all-namespaces exclude each other")
    if not args.all_namespaces and not args.namespaces:
        raise UsageError("smrun operator: give --namespace NS (repeatable) or --all-namespaces")
    options = OperatorOptions.build(
        kubeconfig=args.kubeconfig, context=args.context,
        namespaces=tuple(args.namespaces or ()), operator_id=args.id,
        state_dir=args.state_dir, metrics_port=args.metrics_port,
        health_port=args.health_port, lease_seconds=args.lease_seconds)
    try:
        from statemachine.operator.app import run_operator
    except ImportError as exc:
        raise UsageError(f"smrun operator needs the operator extra ({exc.name} is not "
                         "installed): pip install 'smrun[operator]'") from None
    return run_operator(options)


def _cmd_operator_manifests(args: argparse.Namespace) -> int:
    from statemachine.operator.manifests import DEFAULT_IMAGE, DEFAULT_NAMESPACE, manifests, to_yaml

    sys.stdout.write(to_yaml(manifests(args.install_namespace or DEFAULT_NAMESPACE,
                                       args.image or DEFAULT_IMAGE)))
    return 0


def _sim(argv: list[str]) -> int:
    if argv[:1] != ["serve"]:
        raise UsageError("smrun sim: the only subcommand is `serve` (see `smrun sim serve --help`)")
    from statemachine.sim.serve import main as serve_main

    code: int = serve_main(argv[1:])
    return code


def _check_vms(plan: Any, names: Sequence[str] | None) -> None:
    for name in names or ():
        try:
            plan.vm(name)
        except KeyError:
            known = ", ".join(vm.ref for vm in plan.vms)
            raise UsageError(f"{plan.path}: --vm {name}: no such VM in the plan (known: {known})") from None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return str(value)


def _print_table(rows: Sequence[dict[str, Any]], out: IO[str]) -> None:
    if not rows:
        print("(none)", file=out)
        return
    columns = list(dict.fromkeys(c for row in rows for c in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(str(c)), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(str(c).upper().ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)
