"""The two preview commands over connected clusters: render, pick the first states, compare or
dry-run, print, and answer the exit code.

``smrun diff`` prints the diffs on stdout (nothing else, so the output is a patch a tool can read)
and on stderr where each VM's preview stops and what the run would refuse or accept as it is.
Exit codes follow ``kubectl diff``: 0 nothing would change, 1 something would (or the run would
fail on an object: a refusal to overwrite, a patch of an absent object); an error is 2 (invalid
input) or 3 (a cluster unreachable), as for every smrun command.

``smrun validate --server-dry-run`` prints one line per refusal on stderr and a summary on stdout;
0 when the clusters accept every write, 3 (``PreflightError``: refused, nothing applied) otherwise.

The caller connects the clusters (``statemachine.commands``); this module only reads and sends
dry runs through them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import IO

from statemachine.diff.changes import changes
from statemachine.diff.first import Preview, first_states
from statemachine.diff.serverdryrun import server_dry_run
from statemachine.diff.unified import object_diff
from statemachine.errors import PreflightError, UsageError
from statemachine.itinerary import Itinerary
from statemachine.k8s import Cluster
from statemachine.plan import Plan

__all__ = ["diff", "preview", "validate_server_dry_run"]


def preview(plan: Plan, itinerary: Itinerary, clusters: Mapping[str, Cluster], *,
            vms: Sequence[str] | None = None) -> Preview:
    """The first states' manifests, rendered with the reads from ``clusters`` (GETs only)."""
    from statemachine.engine.preflight import ClusterReads
    from statemachine.render import render_plan

    return first_states(render_plan(plan, itinerary, ClusterReads(clusters), vms=vms))


def _print_stops(found: Preview, err: IO[str], state: str | None = None) -> None:
    for stop in found.stops:
        if state is None or stop.state == state:
            err.write(f"{stop.vm or 'setup'}: preview stops before {stop.state}: "
                      f"{stop.reason}\n")


def _only(found: Preview, itinerary: Itinerary, state: str | None, command: str) -> Preview:
    """``found`` cut to ``--state``; a state that is not previewable is a usage error."""
    if state is None:
        return found
    names = [s.name for s in (*itinerary.setup.states, *itinerary.states)]
    if state not in names:
        raise UsageError(f"{command}: --state {state}: no such state in itinerary "
                         f"{itinerary.name!r} (states: {', '.join(names)})")
    kept = tuple(m for m in found.manifests if m.state == state)
    if not kept:
        why = next((f"{s.vm or 'setup'}: {s.reason}" for s in found.stops if s.state == state),
                   None)
        if why is None:
            stops = ", ".join(f"{s.vm or 'setup'} at {s.state}" for s in found.stops)
            why = (f"it writes nothing for the selected VMs before the previews stop "
                   f"({stops})" if stops else "it writes nothing for the selected VMs")
        raise UsageError(f"{command}: --state {state} cannot be previewed: {why}")
    return Preview(kept, found.stops)


def diff(plan: Plan, itinerary: Itinerary, clusters: Mapping[str, Cluster], *,
         out: IO[str], err: IO[str], vms: Sequence[str] | None = None,
         state: str | None = None) -> int:
    """``smrun diff``: 0 when nothing would change, 1 when something would."""
    found = _only(preview(plan, itinerary, clusters, vms=vms), itinerary, state, "smrun diff")
    _print_stops(found, err, None)
    differs = False
    for change in changes(plan, found.manifests, clusters):
        for note in change.notes:
            err.write(f"{change.vm or 'setup'}: {change.state}: note: {note}\n")
        for problem in change.problems:
            err.write(f"{change.vm or 'setup'}: {change.state}: {problem}\n")
            differs = True
        if change.problems:
            continue
        text = object_diff(change.cluster, change.ref, change.live, change.merged)
        if text:
            head = f"# {change.vm or 'setup'}: {change.state} on {change.cluster}\n"
            out.write(head + text)
            differs = True
    out.flush()
    return 1 if differs else 0


def validate_server_dry_run(plan: Plan, itinerary: Itinerary, clusters: Mapping[str, Cluster],
                            *, out: IO[str], err: IO[str],
                            contexts: Mapping[str, str] | None = None) -> int:
    """``smrun validate --server-dry-run``: 0, or ``PreflightError`` (exit 3) on refusals."""
    found = preview(plan, itinerary, clusters)
    outcomes = server_dry_run(plan, found.manifests, clusters, contexts)
    refusals = [o.refusal for o in outcomes if o.refusal is not None]
    sent = sum(1 for o in outcomes if o.verb)
    for line in refusals:
        err.write(line + "\n")
    err.flush()
    if refusals:
        raise PreflightError(f"server dry run: {len(refusals)} of {sent} writes of the first "
                             "states refused; nothing was applied")
    skipped = len(outcomes) - sent
    out.write(f"server dry run: {sent} writes of the first states accepted by the clusters "
              f"(dryRun=All; {skipped} not sent: existing objects used as they are, or made by "
              "an earlier state)\n")
    _print_stops(found, out)
    return 0
