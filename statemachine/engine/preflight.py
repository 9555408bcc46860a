"""Checks against the clusters before anything is applied (``smrun validate``, start of ``smrun run``).

For the VMs about to start it resolves ``reads`` on the live clusters, renders every enabled
state (outputs of earlier states are placeholders), then checks: every kind used is served; the
itinerary's ``spec.preflight`` rules (block / warn / blockIf); and RBAC — every (cluster, verb,
kind, namespace) the run will use, answered by one SelfSubjectRulesReview per cluster and namespace
(``Cluster.rules``; :class:`Authorizer` falls back to deduplicated SelfSubjectAccessReviews where
a rules review cannot answer), all gaps listed at once together with Role rules that would close
them; and that the Roles and ClusterRoles the run creates, and the roles its bindings bind, grant
only what the user holds (Kubernetes' escalation check, :func:`check_role_grants`). A read the
user may not do (403) is a finding too, every one met in the pass listed once; it ends its VM's
checks. It applies nothing.

When a run follows (``run_checks(..., run_id=...)``), preflight works in the run's own context
(its run id and the clusters' servers) and records, per VM whose checks found nothing, what the
engine computes when that VM starts: its reads, values and predicates (:class:`VmStarts`, handed
over on the :class:`ClusterReads` memo). The engine uses them instead of computing them again
(docs/performance.md, issue 17).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from statemachine import expressions, render
from statemachine.context import DEFAULT_RUN_ID, Context
from statemachine.errors import (ClusterError, Forbidden, KindNotServed, RenderBudgetExceeded,
                                 SmrunError)
from statemachine.itinerary import Itinerary, ReadSpec, StateSpec
from statemachine.k8s import Cluster, Obj, ObjectRef, RulesReview, copy_obj
from statemachine.plan import VM, Plan
from statemachine.parameters import (ValuesMemo, bind_parameters, compute_state_values,
                                     with_values)
from statemachine.render import for_each_items

if TYPE_CHECKING:
    from statemachine.render import RenderedManifest as Rendered

Need = tuple[str, str, str, str]  # (cluster, apiVersion, kind, namespace)

logger = logging.getLogger("statemachine.engine")

# The third read of one kind in one namespace lists them all: a plan of one or two VMs reads
# only what it names; a plan of many reads each (kind, namespace) with one request.
LIST_AFTER = 3

_WATCHED = ("get", "list", "watch")


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> bool:
        return bool(self.problems)


class ClusterReads:
    """``render.ReadSource`` over live clusters, memoized for one preflight pass.

    A pass resolves every VM's reads twice (``render_vm``, then ``resolve_reads`` for the checks)
    and every VM reads the same cluster-scoped objects (instancetype, preference, KubeVirt CRs).
    The memo makes each distinct object one GET per pass (docs/performance.md: 44 → 21 GETs per
    VM), also when several VMs are checked at once on threads: the first asker fetches, the others
    wait for its answer. Callers get a copy, never the memo's object.

    The engine takes the memo over: a VM that starts soon after preflight (:meth:`recent`) uses the
    very objects its checks approved instead of reading them again.
    """

    def __init__(self, clusters: Mapping[str, Cluster], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clusters = clusters
        self.clock = clock
        # Every object of the memo was read after this: the age of the oldest one at most.
        self.created = clock()
        #: Each checked VM's start, when the pass worked in a run's context (``run_checks``).
        self.starts: VmStarts | None = None
        self._memo: dict[tuple[str, str, str, str, str], Future[tuple[float, Obj | None]]] = {}
        self._lock = threading.Lock()
        self._asks: dict[tuple[str, str, str, str], int] = {}
        self._lists: dict[tuple[str, str, str, str], Future[dict[str, Obj] | None]] = {}
        self._crowded: set[tuple[str, str]] = set()

    def expect(self, vms: Iterable[VM]) -> None:
        """The VMs the pass is about to check. Where ``LIST_AFTER`` or more of them live (on each
        cluster, their namespace there: ``VM.namespaces``), each kind is listed
        at its first read there instead of its third. Decision (issue 17): a kind one VM reads
        in its namespace, each of them reads there; the two GETs before the list were wasted,
        ~18 round trips per pass for the live itinerary (every VM kind, on both clusters)."""
        counts: dict[tuple[str, str], int] = {}
        for vm in vms:
            for where in vm.namespaces.items():
                counts[where] = counts.get(where, 0) + 1
        with self._lock:
            self._crowded |= {where for where, n in counts.items() if n >= LIST_AFTER}

    def get(self, cluster: str, api_version: str, kind: str, namespace: str,
            name: str) -> Obj | None:
        key = (cluster, api_version, kind, namespace or "", name)
        with self._lock:
            answer = self._memo.get(key)
            mine = answer is None
            if answer is None:
                answer = self._memo[key] = Future()
        if mine:
            try:
                obj = self._read(cluster, ObjectRef(api_version, kind, namespace or "", name))
            except BaseException as e:
                with self._lock:  # not remembered: the next asker tries again
                    del self._memo[key]
                answer.set_exception(e)
                raise
            answer.set_result((self.clock(), obj))
        _, found = answer.result()
        return copy_obj(found) if found is not None else None

    def _read(self, cluster: str, ref: ObjectRef) -> Obj | None:
        """One object: from a list of its kind in its namespace once several VMs have asked for
        that kind there (one request instead of one per VM: 734 → ~30 requests at 100 VMs), or
        at once where :meth:`expect` was told that many VMs live, else with a GET. Secrets are never listed (only the ones named are read), and a list
        that is refused or fails falls back to GETs: preflight needs only ``get``."""
        coll = (cluster, ref.api_version, ref.kind, ref.namespace)
        listing: Future[dict[str, Obj] | None] | None = None
        if ref.namespace and ref.kind != "Secret":
            with self._lock:
                self._asks[coll] = self._asks.get(coll, 0) + 1
                listing = self._lists.get(coll)
                start = listing is None and (self._asks[coll] >= LIST_AFTER
                                             or (cluster, ref.namespace) in self._crowded)
                if start:
                    listing = self._lists[coll] = Future()
            if start:
                assert listing is not None
                try:
                    items = self.clusters[cluster].list(ref.api_version, ref.kind, namespace=ref.namespace)
                except BaseException as e:
                    listing.set_result(None)  # never leave the other askers waiting
                    if not isinstance(e, ClusterError):
                        raise
                    logger.debug("listing %s in %s on %s failed (%s): reading one by one",
                                 ref.kind, ref.namespace, cluster, e)
                else:
                    listing.set_result({str((o.get("metadata") or {}).get("name")): o for o in items})
        if listing is not None:
            found = listing.result()
            if found is not None:
                return found.get(ref.name)
        return self.clusters[cluster].get(ref)

    def recent(self, cluster: str, ref: ObjectRef, max_age: float) -> tuple[bool, Obj | None]:
        """``(True, object or None)`` when this pass read ``ref`` less than ``max_age`` seconds ago,
        else ``(False, None)``: the caller must read it itself."""
        answer = self._memo.get((cluster, ref.api_version, ref.kind, ref.namespace or "", ref.name))
        if answer is None or not answer.done() or answer.exception() is not None:
            return False, None
        when, found = answer.result()
        if self.clock() - when > max_age:
            return False, None
        return True, (copy_obj(found) if found is not None else None)


@dataclass(frozen=True)
class VmStart:
    """What the engine computes when a VM starts (``Engine._prepared``: its reads, then
    ``values``, then the predicates it freezes), computed by preflight in the same context."""

    reads: dict[str, Any]
    values: dict[str, Any]
    predicates: dict[str, bool]


class VmStarts:
    """Preflight's :class:`VmStart` per VM (``namespace/name``), for the run of ``plan`` and
    ``itinerary`` with id ``run_id`` on clusters with ``servers``: the context the engine must
    have for them to be its own. Filled on the preflight threads, read on the engine's loop."""

    def __init__(self, plan: Plan, itinerary: Itinerary, run_id: str,
                 servers: Mapping[str, str] | None, reads: ClusterReads) -> None:
        self.plan = plan
        self.itinerary = itinerary
        self.run_id = run_id
        self.servers = dict(servers or {})
        self._reads = reads
        self._by_vm: dict[str, VmStart] = {}
        self._lock = threading.Lock()

    def put(self, vm: str, start: VmStart) -> None:
        with self._lock:
            self._by_vm[vm] = start

    def take(self, vm: str, max_age: float) -> VmStart | None:
        """``vm``'s start, once, when every object it was computed from is at most ``max_age``
        seconds old (measured as :meth:`ClusterReads.recent` measures each object, from the
        pass's start: when this answers, ``recent`` would have answered every one of the VM's
        reads from the memo too); else ``None``: the engine computes the start itself."""
        with self._lock:
            start = self._by_vm.pop(vm, None)
        if start is None or self._reads.clock() - self._reads.created > max_age:
            return None
        return start

    def peek(self, vm: str, max_age: float) -> VmStart | None:
        """Like :meth:`take`, but the start stays for :meth:`take` (the engine's rendering ahead
        of the first VM's first states, while the setup waits)."""
        with self._lock:
            start = self._by_vm.get(vm)
        if start is None or self._reads.clock() - self._reads.created > max_age:
            return None
        return start

    def drop(self) -> None:
        """Let go of every start not taken (the engine no longer uses them: too old)."""
        with self._lock:
            self._by_vm.clear()


def _starts_as_the_engine(itinerary: Itinerary) -> bool:
    """Whether preflight computes a VM's start (reads, values, predicates) as the engine would
    at the VM's start, given the same context. Not when the result can depend on the moment
    (``now()``, ``random``...: preflight's moment is not the start's), nor when a reference can
    render differently: the engine renders ``apiVersion`` and ``kind`` too (preflight names and
    namespaces only), and gives a ``forEach`` read's reference ``item`` but no ``index``
    (conservatively: any mention)."""
    def pure(source: str | None, expression: bool = True) -> bool:
        return source is None or expressions.deterministic_source(source, expression=expression)

    if not all(pure(e) for e in (*itinerary.values.values(), *itinerary.predicates.values())):
        return False
    for r in itinerary.reads:
        ref = r.object
        if "{" in ref.api_version or "{" in ref.kind:
            return False
        if r.for_each is not None and "index" in f"{ref.name} {ref.namespace or ''}":
            return False
        if not (pure(r.when) and pure(r.for_each) and pure(ref.name, False)
                and pure(ref.namespace, False)):
            return False
    return True


class _Outputs(render.PendingOutputs):
    """Pending outputs that remember being asked for a name they do not have. The engine
    starts a VM with no outputs (a plain, empty mapping); a computation that asked for none
    went the same as it would there, one that did (a placeholder) is not the engine's."""

    missed = False

    def __missing__(self, key: str) -> str:
        self.missed = True
        return super().__missing__(key)


def plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    return low + "s"


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _has_delete_created(state: StateSpec) -> bool:
    acts = (*state.actions, *state.undo)
    return any(a.kind == "delete_created" for a in acts) or bool(state.retry and state.retry.recreate)


def needed_permissions(itinerary: Itinerary, rendered: Iterable[Rendered],
                       refs: Iterable[tuple[Need, str]]
                       ) -> dict[Need, set[str]]:
    """Verbs per (cluster, apiVersion, kind, namespace) from rendered manifests and extra refs."""
    states = {s.name: s for s in (*itinerary.states, *itinerary.setup.states)}
    needs: dict[Need, set[str]] = defaultdict(set)
    for m in rendered:
        if m.action in ("apply", "ensure"):
            meta = m.manifest.get("metadata") or {}
            key = (m.cluster, m.manifest["apiVersion"], m.manifest["kind"], meta.get("namespace") or "")
            needs[key] |= {"create", *_WATCHED}
            state = states.get(m.state)
            if state is not None and _has_delete_created(state):
                needs[key].add("delete")
        else:
            ref = m.manifest["object"]
            key = (m.cluster, ref["apiVersion"], ref["kind"], ref.get("namespace") or "")
            needs[key] |= {"patch", "get"} if m.action == "patch" else {"delete", *_WATCHED}
    for key, verb in refs:
        needs[key] |= {*_WATCHED} if verb == "watch" else {verb}
    return needs


def policy_rules(by_res: Mapping[tuple[str, str], Iterable[str]]) -> list[dict[str, list[str]]]:
    """RBAC PolicyRules (``apiGroups``, ``resources``, ``verbs``), one per (group, resource),
    sorted: the one derivation behind preflight's suggested rules and ``smrun operator
    manifests``' ClusterRole."""
    return [{"apiGroups": [group], "resources": [resource], "verbs": sorted(set(verbs))}
            for (group, resource), verbs in sorted(by_res.items())]


def resource_verbs(needs: Mapping[Need, set[str]],
                   resource: Callable[[str, str, str], str] | None = None
                   ) -> dict[tuple[str, str], set[str]]:
    """Verbs per (API group, resource) over every cluster and namespace of ``needs``;
    ``resource(cluster, apiVersion, kind)`` names the resource (default: the kind's plural)."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (cluster, api_version, kind, _ns), verbs in needs.items():
        name = resource(cluster, api_version, kind) if resource is not None else plural(kind)
        out[(_group(api_version), name)] |= verbs
    return dict(out)


def role_rules(missing: Mapping[tuple[str, str], dict[tuple[str, str], set[str]]]) -> list[str]:
    """YAML Role rules, per (cluster, namespace), that grant the missing verbs."""
    out: list[str] = []
    for (cluster, ns), by_res in sorted(missing.items()):
        kind = f"Role in namespace {ns}" if ns else "ClusterRole"
        out.append(f"# {cluster} cluster: {kind}")
        out.append("rules:")
        for rule in policy_rules(by_res):
            out.append(f"- apiGroups: [\"{rule['apiGroups'][0]}\"]")
            out.append(f"  resources: [\"{rule['resources'][0]}\"]")
            out.append(f"  verbs: [{', '.join(repr(v).replace(chr(39), chr(34)) for v in rule['verbs'])}]")
    return out


K = TypeVar("K")
V = TypeVar("V")

#: Access reviews in flight at once during :meth:`Authorizer.prefetch`. Decision (issue 17,
#: ninth session): 2, not 8. Each review in flight beyond the connections a cluster's client
#: already holds opens a new TLS connection (a handshake on both sides), and the reviews' client
#: work holds the GIL: with 8 threads the ~13 reviews of an N=3 run took ~22 ms, with 2 ~15 ms
#: (docs/performance.md, "Preflight's reads at once (ninth session)").
PREFETCH_THREADS = 2


class Authorizer:
    """Answers "may the current user ``verb`` this kind here?" with few requests.

    One SelfSubjectRulesReview per (cluster, namespace) answers every namespaced question there,
    so the number of authorization requests does not grow with the number of VMs. A
    SelfSubjectAccessReview is asked, once per distinct question, only where a rules review
    cannot answer: a cluster-scoped kind (a rules review is about one namespace), a review the
    server marks incomplete (another authorizer may allow what RBAC does not list), or a server
    that refuses rules reviews.
    """

    def __init__(self, clusters: Mapping[str, Cluster]) -> None:
        self.clusters = clusters
        self.reviews: dict[tuple[str, str], RulesReview | None] = {}
        self._asked: dict[tuple[str, str, str, str, str], bool] = {}
        self._permits: dict[tuple[str, str, str, str, str, str], bool] = {}

    def resource(self, cluster: str, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced): discovery's, or the kind's plural when the kind is not served."""
        found = self.clusters[cluster].resource_of(api_version, kind)
        return found if found is not None else (plural(kind), True)

    def allowed(self, cluster: str, verb: str, api_version: str, kind: str, ns: str) -> bool:
        key = (cluster, verb, api_version, kind, ns)
        answer = self._by_rules(key, self.review)
        if answer is not None:
            return answer
        if key not in self._asked:
            self._asked[key] = self.clusters[cluster].can_i(verb, api_version, kind, ns)
        return self._asked[key]

    def prefetch(self, questions: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Ask, all at once, the reviews that :meth:`allowed` will need for ``questions``
        (``(cluster, verb, apiVersion, kind, namespace)``): the rules reviews first, then the
        access reviews they leave open. Decision (issue 17): asked one after the other they were
        ~a dozen round trips in a row before the first VM (one per namespace and cluster, plus
        every cluster-scoped question); their answers do not depend on each other, so they go
        out together. An error is not kept: :meth:`allowed` asks again and reports it."""
        questions = list(questions)
        wanted: set[tuple[str, str]] = set()
        for q in questions:
            cluster, _verb, api_version, kind, ns = q
            try:
                _resource, namespaced = self.resource(cluster, api_version, kind)
            except ClusterError:
                continue
            if ns and namespaced and (cluster, ns) not in self.reviews:
                wanted.add((cluster, ns))
        reviews, failed = self._gather({key: partial(self.clusters[key[0]].rules, key[1])
                                         for key in wanted})
        self.reviews.update(reviews)
        for key in failed:  # as review(): a server without rules reviews, ask each question
            self.reviews[key] = None
        open_questions = [q for q in questions if q not in self._asked and self._open(q)]
        answers, _ = self._gather({q: partial(self.clusters[q[0]].can_i, q[1], q[2], q[3], q[4])
                                   for q in open_questions})
        self._asked.update(answers)

    def _by_rules(self, q: tuple[str, str, str, str, str],
                  review: Callable[[str, str], RulesReview | None]) -> bool | None:
        """The rules review's answer to ``q`` (``(cluster, verb, apiVersion, kind, namespace)``):
        ``True`` or ``False``, or ``None`` when it leaves ``q`` to an access review (a
        cluster-scoped kind, no rules review, or an incomplete one that does not allow it).
        ``review(cluster, namespace)`` gives the rules review: :meth:`review` asks for it,
        :meth:`_open` takes only one already asked. The one reading of a rules review, for
        :meth:`allowed` and :meth:`prefetch` alike."""
        cluster, verb, api_version, kind, ns = q
        resource, namespaced = self.resource(cluster, api_version, kind)
        found = review(cluster, ns) if ns and namespaced else None
        if found is None:
            return None
        if found.allows(verb, _group(api_version), resource):
            return True
        return None if found.incomplete else False

    def _open(self, q: tuple[str, str, str, str, str]) -> bool:
        """Whether a rules review already asked leaves ``q`` to an access review."""
        try:
            return self._by_rules(q, lambda cluster, ns: self.reviews.get((cluster, ns))) is None
        except ClusterError:
            return False

    @staticmethod
    def _gather(calls: Mapping[K, Callable[[], V]]) -> tuple[dict[K, V], list[K]]:
        """Each call's answer, asked together; and the keys whose call raised a ClusterError."""
        if not calls:
            return {}, []
        with ThreadPoolExecutor(min(PREFETCH_THREADS, len(calls)), "smrun-authz") as pool:
            futures = {key: pool.submit(call) for key, call in calls.items()}
        answers: dict[K, V] = {}
        failed: list[K] = []
        for key, fut in futures.items():
            try:
                answers[key] = fut.result()
            except ClusterError as e:
                logger.debug("authorization review %s failed (%s)", key, e)
                failed.append(key)
        return answers, failed

    def permits(self, cluster: str, verb: str, group: str, resource: str, ns: str,
                name: str = "") -> bool:
        """May the current user ``verb`` ``resource`` (``res`` or ``res/sub``, as a Role rule
        names it) of ``group`` named ``name`` (``""``: the kind as a whole), in namespace ``ns``
        (``""``: cluster-wide)? The rules review of ``ns`` when it answers (as in
        :meth:`allowed`), else a SelfSubjectAccessReview, asked once. Unlike :meth:`allowed`,
        ``ns`` is taken as given whatever the resource's scope (``bind`` on clusterroles in a
        namespace is what a RoleBinding there needs)."""
        found = self.review(cluster, ns) if ns else None
        if found is not None:
            if found.allows(verb, group, resource, name):
                return True
            if not found.incomplete:
                return False
        key = (cluster, verb, group, resource, ns, name)
        if key not in self._permits:
            self._permits[key] = self.clusters[cluster].can_i_resource(verb, group, resource,
                                                                       ns, name)
        return self._permits[key]

    def holds(self, cluster: str, verb: str, group: str, resource: str, ns: str,
              name: str = "") -> bool | None:
        """Does the current user hold the permission a Role rule would grant (``verb``,
        ``group``, ``resource``, ``name``: ``""`` for any name), in namespace ``ns`` (``""``:
        cluster-wide), as Kubernetes' escalation check judges it? In a namespace, from a complete
        rules review only (``None``: no complete review there, left to the server); cluster-wide,
        where no rules review answers, from :meth:`permits`."""
        if not ns:
            return self.permits(cluster, verb, group, resource, "", name)
        found = self.review(cluster, ns)
        if found is None or found.incomplete:
            return None
        return found.covers(verb, group, resource, name)

    def review(self, cluster: str, ns: str) -> RulesReview | None:
        """The rules review of ``ns`` on ``cluster``, asked once (None: the server has none)."""
        if (cluster, ns) not in self.reviews:
            try:
                self.reviews[(cluster, ns)] = self.clusters[cluster].rules(ns)
            except ClusterError as e:  # a server without rules reviews: ask each question
                logger.debug("%s: no rules review in %s (%s); asking access reviews", cluster, ns, e)
                self.reviews[(cluster, ns)] = None
        return self.reviews[(cluster, ns)]


def check_rbac(clusters: Mapping[str, Cluster], needs: Mapping[Need, set[str]], findings: Findings,
               authorizer: Authorizer | None = None) -> None:
    auth = authorizer or Authorizer(clusters)
    auth.prefetch((cluster, verb, api_version, kind, ns)
                  for (cluster, api_version, kind, ns), verbs in needs.items() for verb in verbs)
    missing: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
    for (cluster, api_version, kind, ns), verbs in sorted(needs.items()):
        for verb in sorted(verbs):
            try:
                allowed = auth.allowed(cluster, verb, api_version, kind, ns)
            except ClusterError as e:
                findings.problems.append(f"{cluster}: cannot check permission to {verb} {kind}: {e}")
                continue
            if not allowed:
                where = f" in namespace {ns}" if ns else " (cluster-wide)"
                findings.problems.append(f"{cluster}: missing permission: {verb} {api_version} {kind}{where}")
                resource, _ = auth.resource(cluster, api_version, kind)
                missing[(cluster, ns)][(_group(api_version), resource)].add(verb)
    if missing:
        findings.rules = role_rules(missing)


_RBAC = "rbac.authorization.k8s.io"


def _grants(rule: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """The atomic permissions ``(group, resource, verb, name)`` of one Role rule (name "": any)."""
    def strings(key: str) -> list[str]:
        values = rule.get(key) or []
        return [str(v) for v in values] if isinstance(values, list) else []
    for group in strings("apiGroups"):
        for resource in strings("resources"):
            for verb in strings("verbs"):
                for name in strings("resourceNames") or [""]:
                    yield group, resource, verb, name


_ROLE_RESOURCES = {"Role": "roles", "ClusterRole": "clusterroles"}
_BINDINGS = ("RoleBinding", "ClusterRoleBinding")
#: What a ClusterRole with an ``aggregationRule`` needs of its creator (upstream's full
#: authority; its non-resource half, ``*`` on every URL, is not checked here).
_FULL_AUTHORITY = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}


def _rbac_kind(m: Rendered) -> str:
    """The kind of the RBAC object (``rbac.authorization.k8s.io``) that ``m`` creates, else ""."""
    manifest = m.manifest
    if m.action not in ("apply", "ensure") or \
            _group(str(manifest.get("apiVersion") or "")) != _RBAC:
        return ""
    return str(manifest.get("kind") or "")


@dataclass(frozen=True)
class RoleBindingGrant:
    """A RoleBinding or ClusterRoleBinding the run creates: it binds ``role`` (a ClusterRole's
    namespace is ``""``), granted in ``scope`` (the binding's namespace; ``""``, cluster-wide,
    for a ClusterRoleBinding); ``created``: the run's manifest of that role, if the run creates
    it."""

    rendered: Rendered
    role: ObjectRef
    scope: str
    created: Rendered | None = None

    @property
    def binding(self) -> str:
        meta = self.rendered.manifest.get("metadata") or {}
        where = f"{self.scope}/" if self.scope else ""
        return f"{self.rendered.manifest.get('kind')} {where}{meta.get('name')}"


def _role_key(m: Rendered, kind: str) -> tuple[str, str, str, str]:
    meta = m.manifest.get("metadata") or {}
    ns = str(meta.get("namespace") or "") if kind == "Role" else ""
    return m.cluster, kind, ns, str(meta.get("name") or "")


def role_bindings(rendered: Iterable[Rendered]) -> list[RoleBindingGrant]:
    """The bindings among ``rendered``, each with the manifest among ``rendered`` that creates
    its role (on that cluster, in that namespace), if one does. A binding the server would refuse
    as invalid (no roleRef, a ClusterRoleBinding of a Role) is left to the server."""
    rendered = list(rendered)
    created: dict[tuple[str, str, str, str], Rendered] = {}
    for m in rendered:
        kind = _rbac_kind(m)
        if kind in _ROLE_RESOURCES:
            created.setdefault(_role_key(m, kind), m)
    out: list[RoleBindingGrant] = []
    for m in rendered:
        kind = _rbac_kind(m)
        if kind not in _BINDINGS:
            continue
        scope = str((m.manifest.get("metadata") or {}).get("namespace") or "") \
            if kind == "RoleBinding" else ""
        ref = m.manifest.get("roleRef")
        if not isinstance(ref, Mapping) or (kind == "RoleBinding" and not scope):
            continue
        role_kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        if role_kind not in _ROLE_RESOURCES or not name or (role_kind == "Role" and not scope):
            continue
        ns = scope if role_kind == "Role" else ""
        out.append(RoleBindingGrant(m, ObjectRef(f"{_RBAC}/v1", role_kind, ns, name), scope,
                                    created.get((m.cluster, role_kind, ns, name))))
    return out


def _may_bind(auth: Authorizer, grant: RoleBindingGrant) -> bool:
    """Whether the runner may ``bind`` the role ``grant`` binds, where the binding is: then
    Kubernetes creates the binding whatever the role grants (or whether it exists)."""
    m, role = grant.rendered, grant.role
    return auth.permits(m.cluster, "bind", _RBAC, _ROLE_RESOURCES[role.kind], grant.scope,
                        role.name)


def role_reads(rendered: Iterable[Rendered], auth: Authorizer) -> list[tuple[Need, str]]:
    """The roles :func:`check_role_grants` will read (``get``), as permission needs: those of
    the :func:`role_bindings` of roles the run does not create whose role the runner may not
    ``bind``. Preflight's own reads, so a runner who may not read them is told so with the Role
    rule that would close it, like any need."""
    out: list[tuple[Need, str]] = []
    for grant in role_bindings(rendered):
        if grant.created is not None:
            continue
        try:
            if _may_bind(auth, grant):
                continue
        except ClusterError:
            pass  # check_role_grants reports it
        role = grant.role
        out.append(((grant.rendered.cluster, role.api_version, role.kind, role.namespace), "get"))
    return out


def check_role_grants(rendered: Iterable[Rendered], findings: Findings, auth: Authorizer,
                      reads: render.ReadSource | None = None) -> None:
    """The RBAC objects the run creates grant only what the runner holds itself.

    Kubernetes refuses to create (RBAC's escalation check, ``statemachine.sim.escalation``):

    - a Role that grants a permission its creator does not hold in the Role's namespace, unless
      the creator may ``escalate`` roles there;
    - a ClusterRole that grants a permission its creator does not hold cluster-wide, unless it
      may ``escalate`` clusterroles (one with an ``aggregationRule`` needs every permission);
    - a RoleBinding (ClusterRoleBinding) whose role grants a permission its creator does not
      hold in the binding's namespace (cluster-wide), unless it may ``bind`` that role; a role
      that does not exist is refused too (404).

    One problem line per permission lacking (``missing permission: VERB ...``, the style of
    :func:`check_rbac`), and Role rules that would grant them. The roles of bindings are read
    from the cluster through ``reads`` (the pass's memo; default: the cluster itself), only
    where the runner may not ``bind`` them (:func:`role_reads` puts those reads among the
    permission needs); a refused read is a finding in the server's words, as any refused read.
    A binding of a role the run creates is judged with that role (a runner who holds what the
    role grants may bind it), unless the runner may ``escalate`` (then the binding is judged by
    the rendered role's rules, where ``escalate`` does not help).

    Decisions: a namespace without a complete rules review is left to the server (another
    authorizer may allow what RBAC does not list; the object's create would say so); cluster-wide
    holdings have no rules review, so each permission is one SelfSubjectAccessReview (asked once
    per pass). Not checked: non-resource URLs a rule grants (a Role cannot; a ClusterRole's are
    left to the server)."""
    rendered = list(rendered)
    missing: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
    seen: set[str] = set(findings.problems)

    def problem(line: str) -> None:
        if line not in seen:
            seen.add(line)
            findings.problems.append(line)

    def judge(cluster: str, scope: str, rules: Any, grants: str) -> None:
        """Report every permission of ``rules`` the runner does not hold in ``scope``."""
        for rule in rules if isinstance(rules, list) else ():
            if not isinstance(rule, Mapping):
                continue
            for group, resource, verb, name in _grants(rule):
                if auth.holds(cluster, verb, group, resource, scope, name) is not False:
                    continue
                what = f"{verb} {group + ' ' if group else ''}{resource}"
                where = f" in namespace {scope}" if scope else " (cluster-wide)"
                problem(f"{cluster}: missing permission: {what}{f' named {name}' if name else ''}"
                        f"{where}, {grants}")
                missing[(cluster, scope)][(group, resource)].add(verb)

    escalated: set[tuple[str, str, str, str]] = set()
    for m in rendered:
        kind = _rbac_kind(m)
        if kind not in _ROLE_RESOURCES:
            continue
        _, _, ns, name = key = _role_key(m, kind)
        if kind == "Role" and not ns:
            continue
        try:
            if auth.permits(m.cluster, "escalate", _RBAC, _ROLE_RESOURCES[kind], ns):
                escalated.add(key)
                continue
            judge(m.cluster, ns, m.manifest.get("rules"),
                  f"which {kind} {name} of state {m.state} grants "
                  f"(a {kind} may grant only what its creator holds)")
            aggregation = m.manifest.get("aggregationRule")
            if kind == "ClusterRole" and isinstance(aggregation, Mapping) and \
                    aggregation.get("clusterRoleSelectors"):
                judge(m.cluster, "", [_FULL_AUTHORITY],
                      f"which ClusterRole {name} of state {m.state} needs for its aggregationRule "
                      "(an aggregated ClusterRole needs every permission of its creator)")
        except ClusterError as e:
            where = f"{ns}/" if ns else ""
            problem(f"{m.cluster}: cannot check what {kind} {where}{name} may grant: {e}")
    for grant in role_bindings(rendered):
        m, role = grant.rendered, grant.role
        made = grant.created
        if made is not None and _role_key(made, role.kind) not in escalated:
            # Judged with the role: a runner who may create it holds what it grants.
            continue
        try:
            if _may_bind(auth, grant):
                continue
            if made is not None:
                found: Obj | None = made.manifest
            elif reads is not None:
                found = reads.get(m.cluster, role.api_version, role.kind, role.namespace, role.name)
            else:
                found = auth.clusters[m.cluster].get(role)
        except Forbidden as e:
            problem(str(e))  # as any refused read: the server's words, once
            continue
        except ClusterError as e:
            problem(f"{m.cluster}: cannot check what {grant.binding} may grant: {e}")
            continue
        if found is None:
            problem(f"{m.cluster}: {grant.binding} of state {m.state} binds {role}, which does "
                    "not exist (a binding may name a missing role only with bind on it)")
            continue
        what = f"{m.manifest.get('kind')} {(m.manifest.get('metadata') or {}).get('name')}"
        try:
            judge(m.cluster, grant.scope, found.get("rules"),
                  f"which {what} of state {m.state} grants by binding {role} (a binding "
                  "may grant only what its creator holds, unless it may bind the role)")
        except ClusterError as e:
            problem(f"{m.cluster}: cannot check what {grant.binding} may grant: {e}")
    if missing:
        findings.rules += role_rules(missing)


def unserved_kinds(clusters: Mapping[str, Cluster], needs: Iterable[Need]) -> set[tuple[str, str, str]]:
    """``(cluster, apiVersion, kind)`` of every need whose kind its cluster does not serve."""
    seen: set[tuple[str, str, str]] = set()
    out: set[tuple[str, str, str]] = set()
    for cluster, api_version, kind, _ in needs:
        if (cluster, api_version, kind) in seen:
            continue
        seen.add((cluster, api_version, kind))
        if not clusters[cluster].served(api_version, kind):
            out.add((cluster, api_version, kind))
    return out


def report_unserved(clusters: Mapping[str, Cluster], itinerary: Itinerary,
                    unserved: Iterable[tuple[str, str, str]], rendered: Iterable[Rendered],
                    findings: Findings) -> None:
    """One line per kind a cluster does not serve, naming where the itinerary uses it and the
    closest kind the cluster serves in that apiVersion."""
    from statemachine.kindorigin import unserved_line

    rendered = list(rendered)
    for cluster, api_version, kind in sorted(unserved):
        kinds_served = getattr(clusters[cluster], "kinds_served", None)  # not in Cluster: optional
        try:
            served = kinds_served(api_version) if kinds_served is not None else None
        except ClusterError:
            served = None  # the hint is a courtesy: the finding stands without it
        findings.problems.append(unserved_line(itinerary, cluster, api_version, kind, rendered,
                                               served=served))


# VMs checked at once: rendering holds the GIL, but each VM's reads are round trips, so a few
# threads overlap one VM's waiting with another's rendering (1.0 s → 0.4 s before the first VM
# at 100 VMs). More threads only contend for the GIL.
CHECK_THREADS = 4


@dataclass
class _VmFindings:
    rendered: list[Rendered] = field(default_factory=list)
    refs: list[tuple[Need, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unserved: set[tuple[str, str, str]] = field(default_factory=set)
    #: Reads the user may not do (401/403), in the order met.
    forbidden: list[Forbidden] = field(default_factory=list)


def run_checks(plan: Plan, itinerary: Itinerary, clusters: Mapping[str, Cluster], *,
               vms: Iterable[VM] | None = None, setup: bool = True,
               servers: Mapping[str, str] | None = None,
               reads: ClusterReads | None = None, run_id: str | None = None) -> Findings:
    """All preflight findings for ``vms`` (default: every VM of the plan), in plan order.

    ``reads`` is the memo to read through (pass one to hand the objects read to the engine).
    ``run_id``: the id of the run that follows, when one does: the VMs are checked and rendered
    in that run's context (its id, and ``servers`` in ``clusters``), and each VM's start is
    recorded on ``reads.starts`` for the engine."""
    plan = bind_parameters(plan, itinerary)  # idempotent; defaults for a library caller's plan
    findings = Findings()
    source = reads if reads is not None else ClusterReads(clusters)
    starts = None
    if run_id is not None and reads is not None and _starts_as_the_engine(itinerary):
        starts = reads.starts = VmStarts(plan, itinerary, run_id, servers, reads)
    rendered: list[Rendered] = []
    refs: list[tuple[Need, str]] = []
    # Decision: a kind a cluster does not serve (a typo, CDI not installed) is reported once, by
    # itself, with where the itinerary uses it: not as the read or render it broke for every
    # VM, not as "missing permission" lines (can_i answers no for a kind discovery lacks), and
    # without Role rules for a resource that does not exist.
    unserved: set[tuple[str, str, str]] = set()
    if setup:
        try:
            rendered += render.render_setup(plan, itinerary, source)
        except RenderBudgetExceeded:
            raise
        except KindNotServed as e:
            unserved.add((e.cluster, e.api_version, e.kind))
        except SmrunError as e:
            findings.problems.append(f"setup: {e}")
    todo = list(plan.vms if vms is None else vms)
    source.expect(todo)
    # Decision: a read the user may not do (403) is a finding, listed like the others, not the
    # end of preflight: an admin fixing permissions sees every refused read of one pass. Its line
    # is the server's message, as when it ended preflight; once per message (every VM reading
    # the same KubeVirt CR is refused with the same words).
    refused: set[str] = set()
    with ThreadPoolExecutor(min(CHECK_THREADS, max(1, len(todo))), "smrun-preflight") as pool:
        # map() hands results back in plan order and re-raises a ClusterError (unreachable, ...)
        per_vm = pool.map(lambda vm: _check_vm(plan, itinerary, vm, source, servers, starts), todo)
        for found in per_vm:
            rendered += found.rendered
            refs += found.refs
            for refusal in map(str, found.forbidden):
                if refusal not in refused:
                    refused.add(refusal)
                    findings.problems.append(refusal)
            findings.problems += found.problems
            findings.warnings += found.warnings
            unserved |= found.unserved
    auth = Authorizer(clusters)
    needs = needed_permissions(itinerary, rendered, refs + role_reads(rendered, auth))
    unserved |= unserved_kinds(clusters, needs)
    report_unserved(clusters, itinerary, unserved, rendered, findings)
    needs = {k: v for k, v in needs.items() if (k[0], k[1], k[2]) not in unserved}
    check_rbac(clusters, needs, findings, auth)
    check_role_grants(rendered, findings, auth, source)
    for cluster, ns in sorted({(c, n) for (c, _, _, n), verbs in needs.items() if "create" in verbs}):
        try:
            allowed = auth.allowed(cluster, "create", "v1", "Event", ns or "default")
        except ClusterError:
            continue
        if not allowed:
            findings.warnings.append(f"{cluster}: cannot create Events in namespace {ns or 'default'}: "
                                     "smrun will not post Kubernetes Events there")
    return findings


def plan_needs(plan: Plan, itinerary: Itinerary, source: render.ReadSource) -> dict[Need, set[str]]:
    """Every (cluster, apiVersion, kind, namespace) and verbs a run of ``plan`` would use, read
    through ``source`` (live clusters, or a simulation seed offline): the derivation preflight's
    RBAC check uses, for callers that need the permissions rather than a check of them
    (``smrun operator manifests``). Raises the first problem as :class:`SmrunError`."""
    rendered = list(render.render_setup(plan, itinerary, source))
    refs: list[tuple[Need, str]] = []
    for vm in plan.vms:
        found = _check_vm(plan, itinerary, vm, source, None)
        if found.forbidden:
            raise found.forbidden[0]  # as before preflight listed them: exit 3
        if found.problems and not found.rendered:
            # A finding of a preflight rule (the VM's state) says nothing about permissions;
            # a VM that did not render does.
            raise SmrunError(found.problems[0])
        rendered += found.rendered
        refs += found.refs
    return needed_permissions(itinerary, rendered, refs)


def itinerary_needs(itinerary: Itinerary) -> dict[Need, set[str]]:
    """Every (cluster, apiVersion, kind) and verbs that some state of ``itinerary`` can use, with
    no plan: every state and setup state as if all predicates were true, their actions and their
    undo actions (whatever their ``when``), every read, readiness object and the commit object.

    The kinds a template creates come from its text (:mod:`statemachine.templatekinds`, every
    branch); from there it is :func:`needed_permissions`, the derivation of the RBAC check, so a
    state is granted the verbs preflight would ask for it. Namespaces are ``""``: the result is
    for a ClusterRole (``smrun operator manifests``). :class:`DefinitionError` when a template's
    kinds cannot be told from its text."""
    from statemachine.render import RenderedManifest
    from statemachine.templatekinds import template_kinds

    rendered: list[Rendered] = []
    refs: list[tuple[Need, str]] = []
    for r in (*itinerary.reads, *itinerary.setup.reads):
        refs.append(((r.object.cluster or r.cluster, r.object.api_version, r.object.kind, ""), "get"))
    for state in (*itinerary.setup.states, *itinerary.states):
        for action in (*state.actions, *state.undo):
            cluster = action.cluster or state.cluster
            if action.kind in ("apply", "ensure") and action.template:
                for api_version, kind in template_kinds(action.template, itinerary.template_dir):
                    doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": ""}}
                    rendered.append(RenderedManifest(state.name, cluster, action.kind, doc))
            elif action.kind in ("patch", "delete") and action.object is not None:
                ref = action.object
                doc = {"object": {"apiVersion": ref.api_version, "kind": ref.kind, "name": ""}}
                rendered.append(RenderedManifest(state.name, ref.cluster or cluster, action.kind, doc))
        for r in state.reads:
            refs.append(((r.object.cluster or r.cluster, r.object.api_version, r.object.kind, ""),
                         "watch"))
        obj = state.readiness.object if state.readiness is not None else None
        if obj is not None:
            refs.append(((obj.cluster or state.cluster, obj.api_version, obj.kind, ""), "watch"))
    if itinerary.commit is not None:
        c = itinerary.commit
        refs.append(((c.cluster, c.object.api_version, c.object.kind, ""), "get"))
    return needed_permissions(itinerary, rendered, refs)


def itinerary_role_grants(itinerary: Itinerary) -> dict[tuple[str, str], set[str]]:
    """Verbs per (API group, resource) that the RBAC Roles some state of ``itinerary`` creates
    grant (the warm ``pause`` cutover's Role, for one): Kubernetes refuses to create a Role that
    grants more than its creator holds, so the creator needs these as well as
    :func:`itinerary_needs`. Read from the templates' text (``templatekinds.template_grants``)."""
    from statemachine.templatekinds import template_grants

    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for state in (*itinerary.setup.states, *itinerary.states):
        for action in (*state.actions, *state.undo):
            if action.kind in ("apply", "ensure") and action.template:
                for group, resource, verbs in template_grants(action.template,
                                                              itinerary.template_dir):
                    out[(group, resource)] |= set(verbs)
    return dict(out)


def _check_vm(plan: Plan, itinerary: Itinerary, vm: VM, source: render.ReadSource,
              servers: Mapping[str, str] | None, starts: VmStarts | None = None) -> _VmFindings:
    """One VM's part of preflight (runs on a pool thread; touches nothing shared but ``source``
    and ``starts``). With ``starts``, in the run's context, and the VM's start recorded there
    when nothing was found."""
    from statemachine import context

    out = _VmFindings()
    who = f"{vm.namespace}/{vm.name}"
    run_id = starts.run_id if starts is not None else DEFAULT_RUN_ID
    try:
        outputs = _Outputs()
        # The VM's values are computed once where their context is the same objects (the reads'
        # steps, the start's values, the checks' values): parameters.ValuesMemo.
        memo = ValuesMemo(itinerary)
        base = context.vm_context(plan, vm, servers=servers, run_id=run_id)
        ctx = {**base, "outputs": outputs}  # = vm_context(..., outputs=outputs)
        # Resolved once, for rendering and the checks alike (errors worded as render_vm's).
        reads = render.resolve_vm_reads(itinerary, ctx, source, memo)
        # The engine resolves the reads with no outputs: reads that used one are not its own.
        record = starts is not None and not outputs.missed
        # Decision: before a run the manifests are rendered in the run's context (its id and the
        # servers, as the engine's), so the values and predicates computed for them are the ones
        # the engine would compute at the VM's start (reads with no outputs, no predicates yet).
        # `smrun validate` renders as `smrun render` does (run id "render", no servers).
        start = render.vm_render_context(plan, itinerary, vm, source, run_id=run_id, reads=reads,
                                         servers=servers if starts is not None else None,
                                         base=base if starts is not None else None, memo=memo)
        out.rendered += render.render_vm(plan, itinerary, vm, source, context=start)
        ctx = with_values(itinerary, {**ctx, "reads": reads}, memo)
        for r in itinerary.reads:
            if r.when is not None and not expressions.evaluate(r.when, ctx):
                continue  # a read switched off for this VM: its name may not even render
            try:  # forEach refs are rendered without their item: only the namespace matters
                ref = r.object.render({**ctx, "item": None, "index": 0})
            except SmrunError:
                continue
            key = (ref.cluster or r.cluster, ref.api_version, ref.kind, ref.namespace or "")
            out.refs.append((key, "get"))
        for state in itinerary.states:
            # State reads: get, and watch (a missing one is waited for). forEach refs are
            # rendered without their item: only the namespace matters here.
            for r in state.reads:
                try:
                    ref = r.object.render({**ctx, "item": None, "index": 0})
                except SmrunError:
                    continue
                out.refs.append(((ref.cluster or r.cluster, ref.api_version, ref.kind,
                                  ref.namespace or ""), "watch"))
            obj = state.readiness.object if state.readiness is not None else None
            if obj is not None:
                try:  # the name may use the state's own values (not those over its reads)
                    ref = obj.render({**ctx, "values": {**ctx["values"],
                                                         **compute_state_values(state, ctx)}})
                except SmrunError:
                    continue
                out.refs.append(((ref.cluster or state.cluster, ref.api_version, ref.kind,
                                  ref.namespace or ""), "watch"))
        if itinerary.commit is not None:
            c = itinerary.commit
            out.refs.append(((c.cluster, c.object.api_version, c.object.kind,
                              c.object.render(ctx).namespace or ""), "get"))
        _checks(itinerary, ctx, who, out)
        if record and starts is not None and not (out.problems or out.unserved):
            starts.put(vm.ref, VmStart(reads, start["values"], start["predicates"]))
    except KindNotServed as e:
        out.unserved.add((e.cluster, e.api_version, e.kind))
    except Forbidden as e:
        out.forbidden.append(e)
        base = context.vm_context(plan, vm, outputs=_Outputs(), servers=servers, run_id=run_id)
        _other_refusals(itinerary, base, source, out)
    except (ClusterError, RenderBudgetExceeded):
        raise  # a runaway template is the itinerary's defect: exit 2, not a finding
    except SmrunError as e:
        out.problems.append(f"{who}: {e}")
    return out


_NEEDS_READS = re.compile(r"\b(reads|values)\b")


def _independent(spec: ReadSpec) -> bool:
    """Whether ``spec`` can be read without any of the VM's reads: its reference, ``when`` and
    ``forEach`` mention neither ``reads`` nor ``values`` (which may be over reads). Decided from
    the text, conservatively: any mention counts."""
    ref = spec.object
    text = " ".join((ref.api_version, ref.kind, ref.name, ref.namespace or "", spec.when or "",
                     spec.for_each or ""))
    return _NEEDS_READS.search(text) is None


def _other_refusals(itinerary: Itinerary, ctx: Context, source: render.ReadSource,
                    out: _VmFindings) -> None:
    """After a refused read ended a VM's checks: the refusals of the VM's reads that need none
    of its reads (:func:`_independent`: a KubeVirt CR, the VM's own instance), each tried by
    itself, so that one pass meets them too (and the kinds they find not served). A read that
    needs another is not tried (what it would read is not known), nor is anything else about
    the VM reported: a read that is not found, for one, is found once the checks can go on."""
    for spec in itinerary.reads:
        if not _independent(spec):
            continue
        try:
            render.resolve_reads((spec,), ctx, source)
        except Forbidden as e:
            out.forbidden.append(e)
        except KindNotServed as e:
            out.unserved.add((e.cluster, e.api_version, e.kind))
        except (ClusterError, RenderBudgetExceeded):
            raise
        except SmrunError:
            continue


def _checks(itinerary: Itinerary, ctx: Context, who: str,
            findings: _VmFindings) -> None:
    for check in itinerary.preflight:
        if check.when is not None and not expressions.evaluate(check.when, ctx):
            continue
        items: list[object] = [None]
        if check.for_each is not None:
            items = for_each_items(check.for_each, ctx, where=f"{check.where}.forEach")
        for i, item in enumerate(items):
            local = dict(ctx) if check.for_each is None else {**ctx, "item": item, "index": i}
            if expressions.evaluate(check.check, local):
                continue
            text = expressions.render_string(check.message, local) if check.message else "check failed"
            line = f"{who}: {check.name}: {text}"
            blocks = check.severity == "block" or (
                check.block_if is not None and bool(expressions.evaluate(check.block_if, local)))
            (findings.problems if blocks else findings.warnings).append(line)
