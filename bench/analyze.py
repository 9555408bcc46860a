"""Turn one benchmark run's logs into numbers: ideal time, reaction latency, requests per VM.

Inputs are the two logs written by ``bench/simserve.py`` (request log: one line per API request
with its arrival time; commit log: one line per committed store write, with who made it and a
digest of the status fields the live itinerary waits on).

Definitions (docs/performance.md explains them with an example):

- A request or commit belongs to a VM when its object name contains the VM's name
  (``vm-00042``, ``vm-00042-root``, ``smrun-vm-00042-<run>-send``). Collection requests without
  a name (informer LISTs, watches, discovery, access reviews) belong to the plan.
- A *satisfying write* is a controller commit at which one of the live itinerary's readiness
  conditions (``WAITS`` below, the same clauses as itineraries/live.yaml) turns from false to true
  for that object.
- For each VM, walking its requests in time order: if satisfying writes happened between two
  consecutive requests, the latest one is what the engine was waiting for, and the second
  request is its reaction. Reaction latency = that request's arrival − the write's commit time.
  The wait started at the later of (the VM's last mutating request before the write) and (the
  previous reaction); the VM's *ideal* time is the sum of these waits: what the migration would
  take if every orchestrator action came the instant its wait was satisfied.
- The plan's ideal time is the setup's waits (the CA bundle sync, controller writes to
  ``kubevirt/kubevirt-ca``) plus the makespan of the VMs' ideal times on ``maxInFlight`` slots,
  VMs started in plan order as slots free up (the engine's scheduling).

Limits: the ideal slightly overstates the true critical path where the controllers went on
without waiting for the engine (a reaction overlapping controller work is counted as wait), so
the overhead ratio is, if anything, flattering by up to one reaction per VM. Reaction latency
is measured to the next request *attributable to the VM*; an unnamed LIST just before it (an
informer's first list of a kind) is counted in the latency.
"""
from __future__ import annotations

import heapq
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

Digest = dict[str, Any]
SETUP = "(setup)"
_VM_RE = re.compile(r"vm-\d{5}")

#: (cluster, kind) → named readiness conditions over the commit digest (bench/simserve.digest).
#: Mirrors the readiness clauses of itineraries/live.yaml for the generated workload, whose VMs
#: all have runStrategy Always (so restoreRunStrategy is "Always").
WAITS: dict[tuple[str, str], dict[str, Callable[[Digest], bool]]] = {
    ("target", "DataVolume"): {"CreateEmptyDataVolumes": lambda s: s.get("phase") == "Succeeded"},
    ("target", "VirtualMachineInstance"): {
        "WaitForTargetVMI": lambda s: s.get("phase") == "WaitingForSync",
        "commit (migration completed)": lambda s: bool(s.get("migrated"))
        and not s.get("migrationFailed")},
    ("target", "VirtualMachineInstanceMigration"): {
        "WaitForTargetMigration": lambda s: bool(s.get("sync")),
        "WaitForStateTransfer": lambda s: s.get("phase") == "Succeeded"},
    ("source", "VirtualMachineInstanceMigration"): {
        "CreateSourceMigration": lambda s: s.get("phase", "") not in ("", "Synchronizing")},
    ("target", "VirtualMachine"): {
        "WaitForTargetVM": lambda s: s.get("printableStatus") == "Running"
        and s.get("runStrategy") == "Always" and bool(s.get("ready"))},
    ("source", "VirtualMachine"): {
        "WaitForSourceHalted": lambda s: s.get("printableStatus") == "Stopped"
        and s.get("runStrategy") == "Halted" and not s.get("created")},
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return out


def owner(name: str, namespace: str = "") -> str | None:
    """The VM an object name belongs to, ``SETUP`` for the CA bundle, else ``None``."""
    m = _VM_RE.search(name)
    if m:
        return m.group(0)
    if namespace == "kubevirt" and name in ("kubevirt-ca", "kubevirt-external-ca"):
        return SETUP
    return None


def _request_name(req: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a request: the path's object, or a POST body's name."""
    parts = [p for p in req["path"].split("/") if p]
    ns = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-1] else ""
    if req.get("method") == "POST":
        return ns, req.get("name") or ""
    # .../namespaces/NS/RESOURCE/NAME[/status]: a name follows the resource segment.
    if "namespaces" in parts:
        rest = parts[parts.index("namespaces") + 2:]
        return ns, rest[1] if len(rest) >= 2 else ""
    return ns, ""


@dataclass
class Wait:
    vm: str
    condition: str
    start: float
    satisfied: float
    reaction: float
    #: the VM's requests after the wait started and before it was satisfied (a poller's cost)
    requests: int = 0


@dataclass
class _Timeline:
    requests: list[tuple[float, bool]] = field(default_factory=list)  # (arrival, mutating)
    writes: list[tuple[float, str]] = field(default_factory=list)  # satisfying (commit ts, cond)


def satisfying_writes(commits: Iterable[dict[str, Any]]) -> dict[str, list[tuple[float, str]]]:
    """Per VM (or SETUP): controller commits at which a wait condition turned true."""
    state: dict[tuple[str, str, str, str, str], bool] = {}
    out: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for c in commits:
        vm = owner(c["name"], c["ns"])
        if vm is None or c["by"] != "controller" or c["type"] == "DELETED":
            continue
        if vm == SETUP:
            if c["kind"] == "ConfigMap" and c["name"] == "kubevirt-ca":
                out[vm].append((c["ts"], "CA bundle"))
            continue
        for cond, pred in WAITS.get((c["cluster"], c["kind"]), {}).items():
            key = (c["cluster"], c["kind"], c["ns"], c["name"], cond)
            now = pred(c["s"])
            if now and not state.get(key, False):
                out[vm].append((c["ts"], cond))
            state[key] = now
    return out


def waits(requests: list[dict[str, Any]], commits: list[dict[str, Any]]) -> list[Wait]:
    """Every wait the engine reacted to, per the module docstring."""
    lines: dict[str, _Timeline] = defaultdict(_Timeline)
    for r in requests:
        if r.get("watch"):
            continue
        ns, name = _request_name(r)
        vm = owner(name, ns) if name else None
        if vm is not None:
            lines[vm].requests.append((r["ts"], r["method"] != "GET"))
    for vm, writes in satisfying_writes(commits).items():
        lines[vm].writes.extend(writes)
    found: list[Wait] = []
    for vm, tl in lines.items():
        reqs, writes = sorted(tl.requests), sorted(tl.writes)
        if not reqs:
            continue
        prev_reaction = reqs[0][0]
        last_mutating = reqs[0][0] if reqs[0][1] else None
        w = 0
        for i in range(1, len(reqs)):
            lo, hi = reqs[i - 1][0], reqs[i][0]
            best: tuple[float, str] | None = None
            while w < len(writes) and writes[w][0] < hi:
                if writes[w][0] > lo:
                    best = writes[w]
                w += 1
            if best is not None:
                start = max(last_mutating if last_mutating is not None else lo, prev_reaction)
                during = sum(1 for t, _ in reqs if start < t < best[0])
                found.append(Wait(vm, best[1], start, best[0], hi, during))
                prev_reaction = hi
            if reqs[i][1]:
                last_mutating = hi
        if vm == SETUP and w < len(writes):
            # The setup's last wait has no setup request after it: the engine reacts by starting
            # the first VM (no VM starts before the plan's setup completed), so that VM's first
            # request is the reaction. Without this, the last CA-bundle wait (up to one controller
            # tick) was counted as smrun's overhead instead of in the ideal.
            best = writes[-1]
            after = [t for v, line in lines.items() if v != SETUP
                     for t, _ in line.requests if t > best[0]]
            if best[0] > reqs[-1][0] and after:
                start = max(last_mutating if last_mutating is not None else reqs[-1][0],
                            prev_reaction)
                during = sum(1 for t, _ in reqs if start < t < best[0])
                found.append(Wait(vm, best[1], start, best[0], min(after), during))
    return found


def _epoch(ts: str) -> float:
    """Seconds since the epoch of an smrun event timestamp (RFC 3339, UTC, milliseconds)."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def detections(events: list[dict[str, Any]], commits: list[dict[str, Any]]) -> list[float]:
    """Milliseconds from a satisfying write to the engine's ``state_completed`` for that wait.

    Counted only when the state was entered before the write (the engine was waiting on it)
    and only for conditions named after a state. Event timestamps have millisecond resolution,
    so each value is within 1 ms; negative values (rounding) are clipped to 0.
    """
    entered: dict[tuple[str, str], float] = {}
    completed: dict[tuple[str, str], float] = {}
    for e in events:
        if e.get("event") in ("state_entered", "state_completed") and e.get("vm"):
            key = (e["vm"].rpartition("/")[2], e["state"])
            book = entered if e["event"] == "state_entered" else completed
            book.setdefault(key, _epoch(e["ts"]))
    out = []
    for vm, writes in satisfying_writes(commits).items():
        for ts, cond in writes:
            key = (vm, cond)
            if key in entered and key in completed and entered[key] <= ts + 0.001:
                out.append(max(0.0, 1000.0 * (completed[key] - ts)))
    return out


def makespan(durations: list[float], slots: int) -> float:
    """Finish time of jobs started in order on ``slots`` parallel slots (greedy list schedule)."""
    free = [0.0] * max(1, min(slots, len(durations) or 1))
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        t = heapq.heappop(free) + d
        end = max(end, t)
        heapq.heappush(free, t)
    return end


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _by_wait(found: list[Wait]) -> dict[str, dict[str, float]]:
    """Reaction latency per wait condition: which wait the time goes to."""
    groups: dict[str, list[float]] = defaultdict(list)
    for wt in found:
        groups[wt.condition].append(1000.0 * (wt.reaction - wt.satisfied))
    return {cond: {"count": len(v), "p50": round(percentile(v, 0.5), 2),
                   "p99": round(percentile(v, 0.99), 2)} for cond, v in sorted(groups.items())}


def summarize(request_log: Path, commit_log: Path, events_log: Path, vms: list[str],
              max_in_flight: int) -> dict[str, Any]:
    """The benchmark's numbers for one run (times in seconds, latencies in milliseconds)."""
    requests, commits = read_jsonl(request_log), read_jsonl(commit_log)
    events = read_jsonl(events_log)
    found = waits(requests, commits)
    detected = detections(events, commits)
    per_vm: dict[str, float] = defaultdict(float)
    setup_ideal = 0.0
    for wt in found:
        if wt.vm == SETUP:
            setup_ideal += wt.satisfied - wt.start
        else:
            per_vm[wt.vm] += wt.satisfied - wt.start
    ideal = setup_ideal + makespan([per_vm.get(v, 0.0) for v in vms], max_in_flight)
    latencies = [1000.0 * (wt.reaction - wt.satisfied) for wt in found]
    calls = [r for r in requests if not r.get("watch")]
    n = max(1, len(vms))
    by_verb = Counter(r["method"] for r in calls)
    attributed = Counter(r["method"] for r in calls
                         if (nm := _request_name(r))[1] and owner(nm[1], nm[0]) not in (None, SETUP))
    lists = sum(1 for r in calls if r["method"] == "GET" and not _request_name(r)[1])
    same_path = Counter((r["cluster"], r["path"]) for r in calls if r["method"] == "GET"
                        and (nm := _request_name(r))[1] and owner(nm[1], nm[0]) not in (None, SETUP))
    first = min((r["ts"] for r in calls), default=0.0)
    span = (max(r["ts"] for r in calls) - first) if calls else 0.0
    starts = [_epoch(e["ts"]) for e in events if e.get("event") == "vm_started"]
    # Connect, discovery, preflight (reads, renders, access reviews) and the CA setup: all
    # before the first VM starts.
    before_first_vm = (min(starts) - first) if starts and calls else 0.0
    worst = sorted(found, key=lambda wt: wt.reaction - wt.satisfied)[-3:]
    return {
        "first_request_at": first,  # epoch seconds: bench/run.py turns them into start/tail
        "last_request_at": first + span,
        "span_s": round(span, 3),
        "ideal_s": round(ideal, 3),
        "ideal_setup_s": round(setup_ideal, 3),
        "ideal_per_vm_s": round(statistics.mean(per_vm.values()), 3) if per_vm else 0.0,
        "reaction_ms": {"count": len(latencies),
                        "p50": round(percentile(latencies, 0.50), 2),
                        "p99": round(percentile(latencies, 0.99), 2),
                        "max": round(max(latencies), 2) if latencies else 0.0},
        "detection_ms": {"count": len(detected),
                         "p50": round(percentile(detected, 0.50), 2),
                         "p99": round(percentile(detected, 0.99), 2),
                         "max": round(max(detected), 2) if detected else 0.0},
        "before_first_vm_s": round(before_first_vm, 3),
        "reaction_by_wait_ms": _by_wait(found),
        "slowest_reactions": [{"vm": wt.vm, "wait": wt.condition,
                               "ms": round(1000 * (wt.reaction - wt.satisfied), 2)}
                              for wt in reversed(worst)],
        "requests_while_waiting_per_vm": round(
            sum(wt.requests for wt in found if wt.vm != SETUP) / n, 2),
        "waiting_s_per_vm": round(
            sum(wt.satisfied - wt.start for wt in found if wt.vm != SETUP) / n, 3),
        "waits_per_vm": round(sum(1 for wt in found if wt.vm != SETUP) / n, 2),
        "requests_total": len(calls),
        "requests_per_vm": {verb: round(count / n, 2) for verb, count in sorted(by_verb.items())},
        "vm_object_requests_per_vm": {verb: round(count / n, 2)
                                      for verb, count in sorted(attributed.items())},
        "unnamed_gets_total": lists,
        "watch_connections": sum(1 for r in requests if r.get("watch")),
        "max_gets_of_one_vm_object": max(same_path.values(), default=0),
        "errors": sum(1 for r in calls if r["status"] >= 500 or r["status"] == 0),
    }
