"""The ``Cluster`` implementation over the official ``kubernetes`` client (``DynamicClient``).

This is the only module of smrun that imports ``kubernetes``, and it does so lazily (inside
:func:`connect` and the methods), so importing it is cheap. One :class:`KubeCluster` holds one
``ApiClient`` and one ``DynamicClient`` for one cluster and is safe to share between threads.

Decisions (see ../shared/specs/simulated-apiserver.md §3 for the client traps they avoid):

- Discovery is cached in a file under the caller's ``cache_dir`` (per run), named after the cluster
  and a hash of the server URL; never the library's shared file in the temp dir, which a reused port
  would serve stale. The file is written once, when the cluster is closed (see ``_discoverer``).
- Every PATCH passes an explicit content type (merge-patch or json-patch): ``DynamicClient.patch``
  defaults to strategic merge, which custom resources reject with 415.
- Responses are parsed as plain JSON (``serialize=False``), not wrapped in ``ResourceInstance``.
- Every failure goes through ``errormap.translate``; transient ones are retried by ``retry.call``,
  and only there: urllib3 does not retry a failed connection underneath it (see
  :func:`_library_retries`).
- A cluster that cannot be reached while smrun connects to it is one WARNING naming it and its
  server, then smrun's retries at DEBUG (see :func:`_unreachable_note`); the final error names
  the cluster, the server and the cause in words (``errormap.translate``). A server whose TLS
  certificate does not verify is not retried (``ClusterNotTrusted``): one line, at once.
- A create retried after a transient failure may have succeeded the first time; a 409 on such a
  retry is resolved by reading the object and comparing smrun's manifest-hash annotation / labels
  (see :func:`_is_same_object`), so an object is never created twice and never adopted by mistake.
- Whoever wants to count requests (the operator's metrics) subscribes with
  :func:`observe_requests`: each request's answer (verb, HTTP status) and each retry are handed to
  the observers, on the thread that sent the request. Nothing here knows Prometheus; with no
  observer the cost is one attribute store per request.

It does not decide what to create, adopt or wait for: that is the engine's job.
"""
from __future__ import annotations

import builtins
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from statemachine.errors import (
    ClusterError,
    ClusterUnreachable,
    Conflict,
    DefinitionError,
    Invalid,
    KindNotServed,
    NotFound,
    PermanentClusterError,
)
from statemachine.k8s import (Obj, ObjectRef, PatchType, ResourceKey, RulesReview, Subscription,
                             WatchHandler, copy_obj, default_kubeconfig, uses_service_account)
import statemachine.k8s as _k8s
from statemachine.k8s import retry as _retry
from statemachine.k8s.errormap import from_status, shown_server, translate
from statemachine.k8s.informer import Informer, StreamHandle

logger = logging.getLogger("statemachine.k8s")

T = TypeVar("T")

MANIFEST_HASH = "smrun.io/manifest-hash"
"""Annotation the engine stamps on every object it creates (SHA-256 of the rendered manifest)."""

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}

_REQUEST_TIMEOUT = (10, 60)
"""(connect, read) seconds for every non-watch request. Without it a half-open connection (a server
or proxy gone without a reset) blocks the caller forever; reads run on the engine's loop thread, so
one such request would stall every VM and the cancel check. A timeout is transient (retried)."""

RequestObserver = Callable[[str, str, "int | None", bool], None]
"""``observer(cluster, verb, status, retry)``: ``retry`` False: a request was answered with HTTP
``status`` (``None``: no answer, e.g. a refused or dropped connection); ``retry`` True: the
request is sent again after an answer ``status`` (its answer is reported as a request of its
own). ``verb`` is smrun's: get, list, watch, create, patch, delete, discover, can_i, rules."""

_observers: tuple[RequestObserver, ...] = ()
_answer = threading.local()  # .status: the HTTP status of the last answer on this thread


def observe_requests(observer: RequestObserver) -> Callable[[], None]:
    """Call ``observer`` for every request of every cluster of this process (see
    :data:`RequestObserver`); returns the function that unsubscribes it. It must be quick and
    must not raise: it runs on the requesting thread."""
    global _observers
    _observers = (*_observers, observer)

    def remove() -> None:
        global _observers
        _observers = tuple(o for o in _observers if o is not observer)
    return remove


def _notify(cluster: str, verb: str, status: int | None, retry: bool) -> None:
    for observer in _observers:
        try:
            observer(cluster, verb, status, retry)
        except Exception:  # noqa: BLE001 - counting never fails a request
            logger.debug("a request observer failed", exc_info=True)


_POOL_SIZE = 64
"""urllib3 connections kept per cluster: one per open watch plus the engine's concurrent requests.
The library default (5 x CPUs) makes urllib3 discard connections and warn under load."""


def _library_retries() -> Any:
    """The urllib3 ``Retry`` of every request of a cluster: no retry of a failed connection.

    Decision: smrun retries failed requests itself (``retry.call``: bounded by its policy, with
    backoff, logged in words). urllib3's default, ``Retry(3)``, retried the same failures again
    underneath, at once and with a WARNING of its own reprs each time: every one of smrun's 8
    tries was 4 connection attempts, so a cluster that did not answer printed 24 library lines
    (and 32 connection attempts), and with an address that drops packets each try was four 10 s
    connect timeouts: the final error came up to 4 x later than smrun's policy says. So urllib3
    retries no connect, read or other (e.g. TLS) error.
    That loses no retry: every request goes through ``retry.call``, which retries any failure to
    reach the server (``ClusterUnreachable``), except two that never relied on urllib3 for it: a
    watch (the informer watches again after a backoff) and a generateName create (retried only
    when its connection was never made, :func:`_never_sent`; urllib3 never retried a read error of
    a POST either: not idempotent). Kept as they were (``total=3``): following redirects and
    urllib3's wait for a GET answered 429/503 with Retry-After, i.e. what a cluster that answers
    sees is unchanged."""
    from urllib3.util.retry import Retry

    return Retry(total=3, connect=0, read=0, other=0)


def _never_sent(error: ClusterError) -> bool:
    """Whether the request that failed with ``error`` never reached the server: its connection
    could not be made (refused, no route, connect timeout), so sending it again is always safe."""
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError is one too

    cause = error.__cause__
    return isinstance(cause, ConnectTimeoutError) \
        or isinstance(getattr(cause, "reason", None), ConnectTimeoutError)  # in MaxRetryError


def _unreachable_note(name: str, server: str,
                   policy: _retry.RetryPolicy) -> Callable[[ClusterError], str | None]:
    """The one line an admin reads while smrun keeps trying to connect to a cluster that does not
    answer (the ``note`` of ``retry.call``); the error that ends the retries, if they all fail,
    follows it. A cluster that answers (a 500, a 429 while connecting) is retried and logged as
    any request is (``None``)."""
    more = policy.attempts - 1
    within = "" if policy.total == float("inf") else f" within {policy.total:g} s"

    def note(error: ClusterError) -> str | None:
        if not isinstance(error, ClusterUnreachable):
            return None
        return (f"cluster {name} ({shown_server(server)}) cannot be reached; retrying up to {more} more "
                f"{'time' if more == 1 else 'times'}{within}")
    return note


_KUBECONFIG_LOCK = threading.Lock()
"""Held while the ``kubernetes`` loader runs (:func:`_load_kube_config` and the token refresh hook).

Decision: the loader writes ``certificate-authority-data`` (and client certificate data) to
temporary files that it shares process-wide by content, and it registers a file's name *before*
writing the file. Two threads loading kubeconfigs with the same CA (the two sides of a plan
connected at the same time, see ``clusters.connect_plan``, against one cluster or the simulated
clusters' one certificate) raced: the second got the name of a file still empty, its first TLS
handshake failed (``no certificate or crl found``) and was retried. Loading is a few
milliseconds, once per connect; serializing it costs nothing."""


def _load_kube_config(kubeconfig: Path | None, context: str | None) -> Any:
    """A ``kubernetes.client.Configuration`` for ``context`` of ``kubeconfig`` (one clear error)."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    if uses_service_account(kubeconfig):
        # In a pod without a kubeconfig (`smrun operator` in its Deployment): the service account.
        from kubernetes.config.incluster_config import InClusterConfigLoader

        cfg = k8s_client.Configuration()
        sa = _k8s.SERVICE_ACCOUNT_DIR
        try:
            InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=str(sa / "token"), cert_filename=str(sa / "ca.crt"),
            ).load_and_set(cfg)
        except k8s_config.ConfigException as exc:
            raise DefinitionError(f"in-cluster configuration: {str(exc).strip()}") from None
        return cfg
    kubeconfig = (kubeconfig or default_kubeconfig()).expanduser()
    if not kubeconfig.is_file():
        raise DefinitionError(f"{kubeconfig}: kubeconfig file not found")
    cfg = k8s_client.Configuration()
    try:
        with _KUBECONFIG_LOCK:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), context=context, client_configuration=cfg,
                persist_config=False)
    except k8s_config.ConfigException as exc:
        # ConfigException texts name the context or field; they carry no secrets.
        first_line = (str(exc).strip().splitlines() or ["invalid kubeconfig"])[0]
        where = f" (context {context!r})" if context else ""
        raise DefinitionError(f"{kubeconfig}{where}: {first_line}") from None
    _throttle_refresh(cfg)
    return cfg


_REFRESH_EVERY = 1.0
"""Seconds between two runs of the kubeconfig's token refresh hook (see _throttle_refresh)."""


def _throttle_refresh(cfg: Any) -> None:
    """The loader installs a hook that the client runs before *every* request: it re-applies the
    whole kubeconfig to the configuration (and setting ``host`` re-reads the proxy environment),
    to renew a token that expires. That was ~0.3 ms of every request, on threads that share the
    GIL with the engine's loop. The loader renews a token five minutes before it expires, so
    running the hook at most once a second changes nothing but the cost."""
    hook = getattr(cfg, "refresh_api_key_hook", None)
    if hook is None:
        return
    lock = threading.Lock()
    last = [float("-inf")]

    def throttled(configuration: Any) -> None:
        with lock:
            now = time.monotonic()
            if now - last[0] < _REFRESH_EVERY:
                return
            last[0] = now
            with _KUBECONFIG_LOCK:  # a renewed exec credential may write certificate files
                hook(configuration)
            # The loader's hook installs itself again each time it runs: put ours back.
            configuration.refresh_api_key_hook = throttled

    cfg.refresh_api_key_hook = throttled


def _default_timeout(rest: Any) -> None:
    """Requests the client makes on its own (discovery inside DynamicClient) pass no timeout, and
    the REST layer hands urllib3 an explicit ``None``: wait forever. Give those a default, so a
    connection that dies silently cannot hang smrun. Our own requests and long watches pass
    explicit timeouts, which are kept."""
    plain = rest.request

    def request(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = _REQUEST_TIMEOUT
        resp = plain(*args, **kwargs)
        # For the request observers: the status of a success (a failure's is in its error).
        _answer.status = getattr(resp, "status", None)
        return resp

    rest.request = request


_DEFERRED_DISCOVERER: Any = None


def _discoverer() -> Any:
    """The client's ``LazyDiscoverer``, writing its cache file once, when the cluster is closed.

    Decision (issue 17): the library rewrites the whole cache file (JSON with a pure-Python
    encoder) after every group version it fetches: ~5 ms each, six or more times before the first
    create, on the threads that preflight and start the VMs. The file is only read by the next
    run against the same cluster (a resume), so one write at :meth:`KubeCluster.close` keeps what it
    is for. A process killed before that leaves the previous file (or none): that run's
    successor discovers again, as on a first run."""
    global _DEFERRED_DISCOVERER
    if _DEFERRED_DISCOVERER is None:
        from kubernetes.dynamic.discovery import LazyDiscoverer

        class DeferredWriteDiscoverer(LazyDiscoverer):
            _dirty = False

            def _write_cache(self) -> None:
                self._dirty = True

            def flush_cache(self) -> None:
                if self._dirty:
                    self._dirty = False
                    # the library's own write (it gives up quietly on an OSError)
                    LazyDiscoverer._write_cache(self)  # type: ignore[no-untyped-call]

        _DEFERRED_DISCOVERER = DeferredWriteDiscoverer
    return _DEFERRED_DISCOVERER


def load_library() -> None:
    """Import the ``kubernetes`` client now (~0.12 s of CPU), on the calling thread.

    For a caller that connects on a helper thread while it goes on with other work
    (:func:`statemachine.clusters.connect_ahead`): an import on the helper would compete with
    that work for the interpreter lock, and the first request would wait for both."""
    from kubernetes import client, config, dynamic

    del client, config, dynamic  # loaded is all that is wanted here


def connect(*, name: str, kubeconfig: Path | str | None = None, context: str | None = None,
            cache_dir: Path, retry_policy: _retry.RetryPolicy | None = None,
            watch_timeout: tuple[int, int] = (240, 300)) -> KubeCluster:
    """Connect to one cluster from a kubeconfig (default ``$KUBECONFIG``, then ``~/.kube/config``).

    ``cache_dir`` receives the discovery cache (create one per run). Raises ``DefinitionError``
    for a missing file or context, ``ClusterUnreachable`` when the server does not answer.
    """
    from kubernetes import client as k8s_client
    from kubernetes.dynamic import DynamicClient

    cfg = _load_kube_config(Path(kubeconfig) if kubeconfig is not None else None, context)
    cfg.connection_pool_maxsize = _POOL_SIZE
    cfg.retries = _library_retries()
    api_client = k8s_client.ApiClient(cfg)
    _default_timeout(api_client.rest_client)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    host_hash = hashlib.sha256(str(cfg.host).encode()).hexdigest()[:12]
    cache_file = cache_dir / f"discovery-{name}-{host_hash}.json"
    policy = retry_policy or _retry.RetryPolicy()

    def make_dynamic() -> Any:
        # The constructor already talks to the server (/version, /apis).
        try:
            return DynamicClient(  # type: ignore[no-untyped-call]
                api_client, cache_file=str(cache_file), discoverer=_discoverer())
        except Exception as exc:
            raise _translated(exc, name, str(cfg.host)) from exc

    try:
        dyn = _retry.call(make_dynamic, policy=policy, verb="discover", what=f"cluster {name}",
                          note=_unreachable_note(name, str(cfg.host), policy))
    except BaseException:
        api_client.close()  # type: ignore[no-untyped-call]
        raise
    return KubeCluster(name, api_client, dyn, retry_policy=policy, watch_timeout=watch_timeout)


def _translated(exc: BaseException, cluster: str, server: str) -> BaseException:
    mapped = translate(exc, cluster=cluster, server=server)
    return mapped if mapped is not None else exc


def _is_same_object(existing: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    """Whether ``existing`` is the object ``manifest`` would have created (after a lost reply).

    Judged by smrun's manifest-hash annotation when the manifest has one, else by every smrun.io/
    label; a manifest with neither cannot be told apart from someone else's object: not ours.
    """
    want_meta = manifest.get("metadata") or {}
    have_meta = existing.get("metadata") or {}
    want_hash = (want_meta.get("annotations") or {}).get(MANIFEST_HASH)
    if want_hash:
        return bool((have_meta.get("annotations") or {}).get(MANIFEST_HASH) == want_hash)
    want_labels = {k: v for k, v in (want_meta.get("labels") or {}).items()
                   if k.startswith("smrun.io/")}
    have_labels = have_meta.get("labels") or {}
    return bool(want_labels) and all(have_labels.get(k) == v for k, v in want_labels.items())


class _Subscription:
    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()


class KubeCluster:
    """One cluster, reached through one ``ApiClient``/``DynamicClient`` (implements ``Cluster``)."""

    def __init__(self, name: str, api_client: Any, dyn: Any, *,
                 retry_policy: _retry.RetryPolicy | None = None,
                 watch_timeout: tuple[int, int] = (240, 300)) -> None:
        self.name = name
        self._api = api_client
        self._dyn = dyn
        self._policy = retry_policy or _retry.RetryPolicy()
        self._watch_timeout = watch_timeout
        self._kinds: dict[tuple[str, str], Any] = {}
        self._kinds_lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._informers: dict[ResourceKey, Informer] = {}
        self._informers_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"KubeCluster({self.name!r})"

    @property
    def server(self) -> str:
        """The API server URL this cluster is reached at (the kubeconfig's ``server``)."""
        return str(self._api.configuration.host)

    # ----------------------------------------------------------------- plumbing

    def stats(self) -> dict[str, int]:
        """HTTP requests sent so far, by verb (retries included; a watch counts once per request)."""
        with self._stats_lock:
            return dict(self._stats)

    def _count(self, verb: str) -> None:
        with self._stats_lock:
            self._stats[verb] += 1

    def _request_once(self, verb: str, what: str, fn: Callable[[], T]) -> T:
        """``fn`` with counting and error translation (no retry)."""
        self._count(verb)
        if _observers:
            _answer.status = 0  # stays 0 if fn sends nothing (discovery answered from its cache)
        try:
            result = fn()
        except ClusterError as exc:
            if _observers:
                _notify(self.name, verb, exc.status, False)
            raise
        except Exception as exc:
            mapped = translate(exc, cluster=self.name, server=self.server)
            if _observers:
                _notify(self.name, verb, mapped.status if mapped is not None else None, False)
            if mapped is None:
                raise
            raise mapped from exc
        if _observers:
            status = getattr(_answer, "status", None)
            if status != 0:
                _notify(self.name, verb, status, False)
        return result

    def _request(self, verb: str, what: str, fn: Callable[[], T], *,
                 retry_if: Callable[[ClusterError], bool] | None = None) -> T:
        """``fn`` with counting, error translation and retries (of the transient errors
        ``retry_if`` accepts, default all)."""
        if not _observers:
            return _retry.call(lambda: self._request_once(verb, what, fn), policy=self._policy,
                               verb=verb, what=what, retry_if=retry_if)
        failed: list[int | None] = []  # the status of each failed try, for the retry count

        def once() -> T:
            if failed:
                _notify(self.name, verb, failed[-1], True)
            try:
                return self._request_once(verb, what, fn)
            except ClusterError as exc:
                failed.append(exc.status)
                raise
        return _retry.call(once, policy=self._policy, verb=verb, what=what, retry_if=retry_if)

    def _resource(self, api_version: str, kind: str) -> Any:
        """The discovered resource for (apiVersion, kind), cached; ``NotFound`` if not served."""
        key = (api_version, kind)
        found = self._kinds.get(key)
        if found is not None:
            return found
        from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

        # Decision (issue 17): name the prefix. Without it the lazy discoverer matches a core
        # "v1" against every group that serves a v1 (events.k8s.io, batch, rbac, storage, ...)
        # and fetches each one's resource list (and rewrites its cache file after each): twelve
        # sequential requests for the first core kind, per cluster, before the first read.
        prefix = "apis" if "/" in api_version else "api"

        def lookup() -> Any:
            try:
                return self._dyn.resources.get(prefix=prefix, api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise KindNotServed(f"{kind} ({api_version}) is not served by cluster {self.name}",
                                    cluster=self.name, api_version=api_version, kind=kind) from None
            except ResourceNotUniqueError:
                raise PermanentClusterError(
                    f"{kind} ({api_version}) is ambiguous on cluster {self.name}") from None

        # The discoverer is not thread-safe and one lookup may fetch and rewrite the cache file.
        with self._kinds_lock:
            found = self._kinds.get(key)
            if found is None:
                found = self._request("discover", f"{kind} ({api_version})", lookup)
                self._kinds[key] = found
        return found

    @staticmethod
    def _json(resp: Any) -> Any:
        data = resp.data
        try:
            return json.loads(data) if data else {}
        except ValueError:  # e.g. an HTML page from a proxy; never echo the body
            raise PermanentClusterError("the API server answered with something other than "
                                        "JSON") from None

    def _path(self, resource: Any, namespace: str, name: str = "") -> str:
        ns = namespace if resource.namespaced else None
        return str(resource.path(name=name or None, namespace=ns or None))

    # ------------------------------------------------------------ Cluster API

    def get(self, ref: ObjectRef) -> Obj | None:
        """The object or ``None``; served from a synced shared watch when one covers ``ref``."""
        obj = self.peek(ref)
        return copy_obj(obj) if obj is not None else None

    def peek(self, ref: ObjectRef) -> Obj | None:
        """Like :meth:`get`, but a cached object is the cache's own, not a copy: only for callers
        that never change it (the engine's readiness checks, on every watch event: copying each
        object there was the largest single cost of a wait). The cache replaces objects on
        events and never changes one in place, so a peeked object stays as it was read."""
        for key in (ResourceKey(ref.api_version, ref.kind, ref.namespace),
                    ResourceKey(ref.api_version, ref.kind, "")):
            informer = self._informers.get(key)
            if informer is not None and informer.synced:
                return informer.cached(ref.namespace, ref.name)
        return self.fetch(ref)

    def fetch(self, ref: ObjectRef) -> Obj | None:
        """The object read from the API server (never from a watch cache), or ``None``."""
        resource = self._resource(ref.api_version, ref.kind)
        path = self._path(resource, ref.namespace, ref.name)
        try:
            obj: Obj = self._request("get", str(ref), lambda: self._json(
                self._dyn.request("get", path, serialize=False, _request_timeout=_REQUEST_TIMEOUT)))
        except NotFound:
            return None
        return obj

    def list(self, api_version: str, kind: str, *, namespace: str = "",
             label_selector: str = "") -> list[Obj]:
        return self.list_with_version(api_version, kind, namespace=namespace,
                                      label_selector=label_selector)[0]

    def list_with_version(self, api_version: str, kind: str, *, namespace: str = "",
                          label_selector: str = "") -> tuple[builtins.list[Obj], str]:
        """Items (with apiVersion and kind filled in) and the list's resourceVersion."""
        resource = self._resource(api_version, kind)
        path = self._path(resource, namespace)
        where = f"{kind} list" + (f" in {namespace}" if namespace else "")
        body: Obj = self._request("list", where, lambda: self._json(self._dyn.request(
            "get", path, label_selector=label_selector or None, serialize=False,
            _request_timeout=_REQUEST_TIMEOUT)))
        items: builtins.list[Obj] = builtins.list(body.get("items") or [])
        for item in items:  # real API servers omit these on list items
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        """Create the object; ``Conflict`` if it already exists (and is not this very create)."""
        ref = ObjectRef.of(manifest)
        resource = self._resource(ref.api_version, ref.kind)
        if resource.namespaced and not ref.namespace:
            raise Invalid(f"{ref}: metadata.namespace is required for a namespaced kind")
        if not ref.name and not (manifest.get("metadata") or {}).get("generateName"):
            raise Invalid(f"{ref.kind}: metadata.name is required")
        path = self._path(resource, ref.namespace)
        body = dict(manifest)
        tries = 0

        def attempt() -> Obj:
            nonlocal tries
            tries += 1
            try:
                created: Obj = self._json(self._dyn.request(
                    "post", path, body=body, dry_run="All" if dry_run else None, serialize=False,
                    _request_timeout=_REQUEST_TIMEOUT))
                return created
            except Exception as exc:
                mapped = translate(exc, cluster=self.name, server=self.server)
                if isinstance(mapped, Conflict) and tries > 1 and ref.name and not dry_run:
                    # An earlier try may have been applied before its answer was lost.
                    existing = self.fetch(ref)
                    if existing is not None and _is_same_object(existing, manifest):
                        logger.info("create %s: already created by an earlier try", ref)
                        return existing
                raise

        if ref.name:
            created = self._request("create", str(ref), attempt)
        else:
            # generateName: a retried POST after a lost answer would create a second object that
            # nothing can tell apart from the first, so such a create is sent once only: it is
            # retried only when it was never sent (its connection could not be made).
            created = self._request("create", str(ref), attempt, retry_if=_never_sent)
        if not dry_run:
            self._observe(created)
        return created

    def _observe(self, obj: Obj) -> None:
        """Feed our own write's answer to the shared watch covering it (read-your-writes)."""
        ref = ObjectRef.of(obj)
        for key in (ResourceKey(ref.api_version, ref.kind, ref.namespace),
                    ResourceKey(ref.api_version, ref.kind, "")):
            informer = self._informers.get(key)
            if informer is not None:
                informer.observe(obj)

    def patch(self, ref: ObjectRef, patch: Any, *, patch_type: PatchType = "merge",
              subresource: str = "", dry_run: bool = False) -> Obj:
        """Patch the object; with ``dry_run`` the server judges the patch (``dryRun=All``) and
        answers the would-be object without storing it."""
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"unsupported patch type {patch_type!r} (merge or json)")
        resource = self._resource(ref.api_version, ref.kind)
        path = self._path(resource, ref.namespace, ref.name)
        if subresource:
            path = f"{path}/{subresource}"
        patched: Obj = self._request("patch", str(ref), lambda: self._json(self._dyn.request(
            "patch", path, body=patch, content_type=content_type, serialize=False,
            dry_run="All" if dry_run else None, _request_timeout=_REQUEST_TIMEOUT)))
        if not dry_run:
            self._observe(patched)
        return patched

    def delete(self, ref: ObjectRef) -> bool:
        """Request deletion with background propagation; ``False`` if it was already gone."""
        resource = self._resource(ref.api_version, ref.kind)
        path = self._path(resource, ref.namespace, ref.name)
        try:
            # The answer is read (and dropped) so its connection goes back to the pool: an unread
            # response keeps it, and every delete then cost a new TLS connection; under load the
            # simulator's short accept queue turned some of those into a 1 s SYN retry.
            self._request("delete", str(ref), lambda: self._dyn.request(
                "delete", path, body={"propagationPolicy": "Background"},
                propagation_policy="Background", serialize=False,
                _request_timeout=_REQUEST_TIMEOUT).data)
        except NotFound:
            return False
        return True

    def served(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
        except NotFound:
            return False
        return True

    def can_i(self, verb: str, api_version: str, kind: str, namespace: str = "",
              *, subresource: str = "", name: str = "") -> bool:
        """SelfSubjectAccessReview for the current user; ``False`` if the kind is not served."""
        try:
            resource = self._resource(api_version, kind)
        except NotFound:
            return False
        attrs: dict[str, str] = {"verb": verb, "group": resource.group or "",
                                 "resource": resource.name}
        if namespace and resource.namespaced:
            attrs["namespace"] = namespace
        if subresource:
            attrs["subresource"] = subresource
        if name:
            attrs["name"] = name
        return self._access_review(attrs)

    def can_i_resource(self, verb: str, group: str, resource: str, namespace: str = "",
                       name: str = "") -> bool:
        """SelfSubjectAccessReview of ``verb`` on ``resource`` (``res`` or ``res/sub``, as a
        Role rule names it; ``*`` allowed) of ``group``, in ``namespace`` (``""``: cluster-wide)
        as given, whatever the resource's scope (a RoleBinding may grant ``bind`` on
        clusterroles in its namespace), without discovery."""
        res, _, sub = resource.partition("/")
        attrs: dict[str, str] = {"verb": verb, "group": group, "resource": res}
        for key, value in (("subresource", sub), ("namespace", namespace), ("name", name)):
            if value:
                attrs[key] = value
        return self._access_review(attrs)

    def _access_review(self, attrs: Mapping[str, str]) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": dict(attrs)}}
        what = f"{attrs['verb']} {attrs['resource']}"
        answer: Obj = self._request("can_i", what, lambda: self._json(
            self._dyn.request("post", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                              body=review, serialize=False, _request_timeout=_REQUEST_TIMEOUT)))
        return bool((answer.get("status") or {}).get("allowed"))

    def kinds_served(self, api_version: str) -> tuple[str, ...]:
        """The kinds discovery lists for ``api_version`` (none when the group/version is not
        served): for a "did you mean" when a kind is not served. Not on a hot path."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError
        from kubernetes.dynamic.resource import ResourceList

        def lookup() -> tuple[str, ...]:
            try:
                found = self._dyn.resources.search(api_version=api_version)
            except ResourceNotFoundError:
                return ()
            return tuple(sorted({str(r.kind) for r in found
                                 if not isinstance(r, ResourceList) and "/" not in str(r.name)}))

        with self._kinds_lock:  # the discoverer is not thread-safe (see _resource)
            return self._request("discover", f"kinds of {api_version}", lookup)

    def resource_of(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        """(plural, namespaced) of a served kind, from discovery; ``None`` if not served."""
        try:
            resource = self._resource(api_version, kind)
        except NotFound:
            return None
        return str(resource.name), bool(resource.namespaced)

    def rules(self, namespace: str) -> RulesReview:
        """SelfSubjectRulesReview for the current user in ``namespace`` (every authenticated
        user may ask: system:basic-user)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                  "spec": {"namespace": namespace}}
        answer: Obj = self._request("rules", f"rules in {namespace}", lambda: self._json(
            self._dyn.request("post", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                              body=review, serialize=False, _request_timeout=_REQUEST_TIMEOUT)))
        return RulesReview.from_status(answer.get("status") or {})

    # ----------------------------------------------------------------- watches

    def watch(self, key: ResourceKey, handler: WatchHandler) -> Subscription:
        """Subscribe ``handler`` to the shared list+watch of ``key`` (started on first use)."""
        if self._closed:
            raise RuntimeError(f"cluster {self.name} is closed")
        resource = self._resource(key.api_version, key.kind)
        # Never hold the registry lock while taking an informer's dispatch lock (a handler running
        # under the latter may call watch()): subscribe outside it and retry if the informer was
        # retired in between.
        while True:
            with self._informers_lock:
                informer = self._informers.get(key)
                if informer is None:
                    informer = self._new_informer(resource, key)
                    self._informers[key] = informer
                    informer.start()
            if informer.subscribe(handler):
                break
            with self._informers_lock:
                if self._informers.get(key) is informer:
                    del self._informers[key]

        def unsubscribe() -> None:
            if informer.unsubscribe(handler) == 0 and informer.retire_if_idle():
                with self._informers_lock:
                    if self._informers.get(key) is informer:
                        del self._informers[key]
        return _Subscription(unsubscribe)

    def _new_informer(self, resource: Any, key: ResourceKey) -> Informer:
        return Informer(
            key, name=f"{self.name}:{key.kind}:{key.namespace or '*'}",
            lister=lambda: self.list_with_version(key.api_version, key.kind,
                                                  namespace=key.namespace),
            streamer=lambda rv, timeout, handle: self._watch_stream(
                resource, key, rv, timeout, handle),
            timeout_range=self._watch_timeout)

    def informer(self, key: ResourceKey) -> Informer | None:
        """The running shared watch for ``key``, if any (for waiting on its first sync)."""
        return self._informers.get(key)

    def _watch_stream(self, resource: Any, key: ResourceKey, rv: str, timeout: int,
                      handle: StreamHandle) -> Iterator[Obj]:
        """Raw watch events from ``rv``; ERROR events are raised (``Gone`` for 410)."""
        path = self._path(resource, key.namespace)
        # No retry here: the informer loop backs off and re-watches on its own.
        self._count("watch")
        try:
            resp = self._dyn.request(
                "get", path, watch=True, resource_version=rv or None, timeout_seconds=timeout,
                allow_watch_bookmarks=True, serialize=False,
                # (connect, read) timeouts; the read one is only a backstop for a dead stream.
                _request_timeout=(10, timeout + 30))
        except Exception as exc:
            mapped = _translated(exc, self.name, self.server)
            if _observers:
                _notify(self.name, "watch", getattr(mapped, "status", None), False)
            raise mapped from exc
        if _observers:
            _notify(self.name, "watch", getattr(resp, "status", None), False)
        handle.attach(resp)
        complete = False
        try:
            for line in _lines(resp):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    raise from_status(event.get("object") or {})
                yield event
            complete = True
        except ClusterError:
            raise
        except Exception as exc:
            if handle.stopping:
                return
            raise _translated(exc, self.name, self.server) from exc
        finally:
            handle.detach()
            if not complete:  # never hand a half-read stream back to the pool
                resp.close()
            resp.release_conn()

    def close(self) -> None:
        """Stop every shared watch and close the connection pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._informers_lock:
            informers = list(self._informers.values())
            self._informers.clear()
        for informer in informers:
            informer.stop()
        for informer in informers:
            informer.join(timeout=5)
        flush = getattr(getattr(self._dyn, "resources", None), "flush_cache", None)
        if flush is not None:
            with self._kinds_lock:  # not while a lookup is updating it
                flush()
        self._api.close()


def _lines(resp: Any) -> Iterator[bytes]:
    """Newline-delimited lines of a streaming response, yielded as soon as each line is complete."""
    if getattr(resp, "chunked", False):
        chunks: Iterator[bytes] = resp.stream(amt=None, decode_content=False)
    else:  # close-delimited: read1 returns what is there instead of waiting for the end
        chunks = iter(lambda: bytes(resp.read1(65536)), b"")
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


__all__ = ["KubeCluster", "MANIFEST_HASH", "RequestObserver", "connect", "load_library",
           "observe_requests"]
