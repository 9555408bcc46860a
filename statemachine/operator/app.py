"""``smrun operator``: kopf wiring. The only module that imports kopf.

kopf watches Plan objects (in the ``--namespace`` namespaces, or all) and calls the handlers
here, which hand each Plan to the :class:`~statemachine.operator.worker.PlanManager`: a Plan is
started when it is created, when its spec changes (a new generation) and, for Plans not finished
for their generation, when the operator starts (resume from the journal). Deleting a Plan cancels
its run, and the ``smrun.io/finalizer`` finalizer is removed only once the undo has ended. kopf's own bookkeeping goes to annotations
under ``smrun.io`` (not to ``status``, which is smrun's), and kopf posts no Events of its own:
the Events on a Plan are smrun's.

kopf talks to the cluster with its own client; it logs in with the ``--kubeconfig``/``--context``
given (server, CA, token or client certificate read from the kubeconfig), else in-cluster with
the pod's service account. smrun's own requests (status, Events, the migration) go through
``statemachine.k8s.client`` as everywhere else.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import kopf
import yaml

from statemachine.errors import DefinitionError
from statemachine import k8s
from statemachine.k8s import default_kubeconfig
from statemachine.operator import crd
from statemachine.operator.options import OperatorOptions
from statemachine.operator.worker import PlanManager

logger = logging.getLogger("statemachine.operator")


def connection_info(kubeconfig: Path | None, context: str | None) -> kopf.ConnectionInfo:
    """kopf's credentials for ``context`` of ``kubeconfig`` (or the pod's service account)."""
    if k8s.uses_service_account(kubeconfig):
        return _service_account_login()
    path = kubeconfig or default_kubeconfig()
    try:
        config = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise DefinitionError(f"{path}: kubeconfig cannot be read: {exc.strerror}") from None

    def named(section: str, name: str) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == name:
                found: dict[str, Any] = item.get(section[:-1]) or {}
                return found
        raise DefinitionError(f"{path}: no {section[:-1]} {name!r}")

    chosen = context or config.get("current-context")
    if not chosen:
        raise DefinitionError(f"{path}: no --context and no current-context")
    ctx = named("contexts", chosen)
    cluster, user = named("clusters", ctx.get("cluster", "")), named("users", ctx.get("user", ""))
    token = user.get("token")
    if token is None and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text(encoding="utf-8").strip()
    return kopf.ConnectionInfo(
        server=cluster["server"], ca_path=cluster.get("certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"), token=token,
        certificate_path=user.get("client-certificate"),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=user.get("client-key"), private_key_data=user.get("client-key-data"),
        username=user.get("username"), password=user.get("password"),
        default_namespace=ctx.get("namespace"))


def _service_account_login() -> kopf.ConnectionInfo:
    """kopf's credentials in a pod. Not kopf's own ``login_with_service_account``: that one
    always dials ``kubernetes.default.svc`` and reads the fixed mount path, while smrun's client
    dials ``KUBERNETES_SERVICE_HOST`` (as client-go does); both halves of the operator must reach
    the same server with the same identity."""
    sa = k8s.SERVICE_ACCOUNT_DIR
    server = k8s.in_cluster_server()
    if server is None:
        raise DefinitionError("smrun operator: no kubeconfig and no in-cluster service account")
    namespace = sa / "namespace"
    return kopf.ConnectionInfo(
        server=server, token=(sa / "token").read_text(encoding="utf-8").strip() or None,
        ca_path=str(sa / "ca.crt") if (sa / "ca.crt").is_file() else None,
        default_namespace=(namespace.read_text(encoding="utf-8").strip() or None)
        if namespace.is_file() else None)


def build_registry(manager: PlanManager, options: OperatorOptions,
                   ready: threading.Event | None = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    resource = (crd.GROUP, crd.VERSION, crd.PLURAL)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="smrun.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="smrun.io", key="last-handled-configuration")
        settings.posting.enabled = False
        settings.persistence.finalizer = "smrun.io/finalizer"
        settings.peering.standalone = True
        settings.watching.server_timeout = 270
        if ready is not None:
            ready.set()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(options.kubeconfig, options.context)

    def start(body: Mapping[str, Any], **_: Any) -> None:
        manager.ensure(_plain(body))

    kopf.on.resume(*resource, registry=registry)(start)
    kopf.on.create(*resource, registry=registry)(start)
    kopf.on.update(*resource, field="spec", registry=registry)(start)

    if options.lease_seconds:
        # A replica that does not hold a Plan's Lease looks again this often: it takes over
        # once the holder has stopped renewing.
        kopf.timer(*resource, registry=registry, interval=max(1.0, options.lease_seconds / 3),
                   idle=None)(start)

    @kopf.on.delete(*resource, registry=registry)
    def deleted(body: Mapping[str, Any], **_: Any) -> None:
        # The finalizer stays until the run is canceled and its undo has ended (here, or on the
        # replica holding the Plan's Lease): deleting a Plan never leaves half a migration.
        waiting = manager.release(_plain(body))
        if waiting:
            raise kopf.TemporaryError(waiting, delay=1)

    return registry


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """kopf's live body view as plain data (the worker keeps it after the handler returns)."""
    return {k: _copy(v) for k, v in body.items()}


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _own_kubeconfig(given: Path | None) -> Path | None:
    """The kubeconfig of the operator's own cluster for Plans that omit a side (``None``: in
    a pod, credentials.py writes one for the service account)."""
    if given is not None:
        return given.resolve()
    default = default_kubeconfig()
    return default if default.is_file() else None


def run_operator(options: OperatorOptions) -> int:
    """Run until interrupted (SIGINT/SIGTERM); 0 on a clean stop."""
    from statemachine.k8s.client import connect, observe_requests
    from statemachine.operator.metrics import Metrics, serve_health

    logging.getLogger("kopf").setLevel(logging.WARNING)
    ready = threading.Event()
    health = serve_health(options.health_port, ready.is_set) if options.health_port else None
    options.state_dir.mkdir(parents=True, exist_ok=True)
    manager: PlanManager | None = None
    metrics = Metrics(lambda: manager.snapshot() if manager is not None else [])
    # Every request of this process (the operator's client and each Plan's clusters).
    unobserve = observe_requests(metrics.request)
    api = connect(name="operator", kubeconfig=options.kubeconfig, context=options.context,
                  cache_dir=options.state_dir / "cache")
    manager = PlanManager(
        api, operator_id=options.operator_id, state_dir=options.state_dir,
        on_state_done=lambda itinerary, state, seconds:
            metrics.state_seconds.labels(itinerary, state).observe(seconds),
        lease_seconds=options.lease_seconds,
        own=(_own_kubeconfig(options.kubeconfig), options.context),
        on_reaction=lambda itinerary, state, seconds:
            metrics.reaction_seconds.labels(itinerary, state).observe(seconds),
        on_journal=metrics.journal_write)
    if options.metrics_port:
        metrics.serve(options.metrics_port)
    registry = build_registry(manager, options, ready)
    try:
        asyncio.run(kopf.operator(
            registry=registry, clusterwide=not options.namespaces,
            namespaces=list(options.namespaces), standalone=True,
            # kopf otherwise names itself user@host from the passwd entry (getpass), and the
            # image's USER 65532 has none: it crashed at start in the image. Peering is off,
            # so the name is only a name; ours is the --id.
            identity=cast(Any, options.operator_id)))
    finally:
        if health is not None:
            health.shutdown()
        unobserve()
        api.close()
    return 0
