"""The HTTP side of one simulated cluster: the Kubernetes REST protocol over a :class:`Store`.

Stdlib ``ThreadingHTTPServer`` on 127.0.0.1, HTTP/1.1 keep-alive, ``TCP_NODELAY`` on every
accepted socket (without it each response stalls ~40 ms on Nagle + delayed ACK). Serves discovery,
the OpenAPI v3 stub, CRUD, patches, status subresources, watches, bearer-token authentication and
RBAC (and its escalation check on writes of roles and bindings, ``escalation.py``), the self
reviews and TokenRequest (``reviews.py``), schema admission of custom resources
(``admission.py``), fault injection (``faults.FaultInjector``) and a request log. Request bodies
come off the wire through ``wire.py`` (Content-Length or chunked, the 3 MiB limit) and are
decoded by ``decode.py`` (JSON, YAML, Kubernetes protobuf). Responses are JSON; a client asking
for a Table gets one (``printing.py``); lists page and honour resourceVersion semantics
(``paging.py``). Errors are metav1.Status bodies with upstream reasons and messages; a request
that breaks the HTTP framing gets Go net/http's plain-text answer and the connection is closed.
Idle keep-alive connections are closed after ``idle_timeout`` seconds (upstream: 90). A bad
request never prints a traceback: an unexpected failure is one line on stderr and a 500.

Not served: protobuf responses, aggregated discovery, ``/proxy``, ``/exec``, subresources other
than ``status`` and ``serviceaccounts/token``.
"""
from __future__ import annotations

import json
import re
import select
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from statemachine.errors import ClusterError, PermanentClusterError
from statemachine.sim import (admission, auth, coredefaults, crd, decode, deletion, discovery,
                              managedfields, openapi, paging, patches, printing, protobuf,
                              reviews, selectors, validation, watch, wire)
from statemachine.sim import dryrun, escalation, events, impersonation, subresources, webhooks
from statemachine.sim.faults import FaultInjector
from statemachine.sim.kinds import Kind
from statemachine.sim.requestlog import RequestLog
from statemachine.sim.store import PatchType, Store
from statemachine.sim.tokens import TokenIssuer

_SELF_REVIEWS = frozenset({"SelfSubjectAccessReview", "SelfSubjectRulesReview",
                           "SelfSubjectReview"})
PATCH_TYPES: dict[str, PatchType] = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


def status_body(code: int, reason: str, message: str,
                details: dict[str, Any] | None = None,
                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": metadata or {},
                            "status": "Failure", "message": message, "reason": reason,
                            "code": code}
    if not reason:  # omitempty: an admission webhook's single error carries no reason
        del body["reason"]
    if details:
        body["details"] = details
    return body


def _error(status: int, reason: str, message: str) -> PermanentClusterError:
    return PermanentClusterError(message, status=status, reason=reason)


#: kube-apiserver's HTTP/1.1 ``IdleTimeout`` (``secure_serving.go``).
IDLE_TIMEOUT = 90.0
#: How long a TLS handshake may take before the connection is dropped.
HANDSHAKE_TIMEOUT = 10.0
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def log_line(message: str) -> None:
    """The server's own log: one line on stderr (never a traceback)."""
    try:
        sys.stderr.write(message.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


@dataclass(frozen=True)
class Route:
    """A parsed resource URL."""

    kind: Kind
    namespace: str
    name: str
    subresource: str


class ApiServer:
    """One simulated cluster's API server. ``start()`` binds a random loopback port."""

    def __init__(self, name: str, store: Store, *, tokens: dict[str, str],
                 faults: FaultInjector | None = None, request_log: RequestLog | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.name = name
        self.store = store
        self.tokens = tokens  # token -> user
        self.faults = faults
        self.request_log = request_log
        self.stopping = threading.Event()
        # RBAC's escalation check, the built-in DefaultStorageClass plugin, schema admission
        # (decoding, pruning, validation), then KubeVirt's webhooks.
        store.admission = escalation.hook(store, coredefaults.hook(
            store, webhooks.hook(store, admission.admit)))
        store.admission_active = admission.in_request  # both act only inside an API request
        self.issuer = TokenIssuer()
        #: Seconds between the periodic BOOKMARKs of a watch that allows them.
        self.bookmark_every = watch.BOOKMARK_EVERY
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        api = self

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            # The stdlib's backlog is 5: a burst of new connections overflowed it, and the
            # kernel's SYN retry made those clients wait a full second. API servers listen with
            # the system's maximum.
            request_queue_size = socket.SOMAXCONN

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = super().get_request()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with api._conns_lock:
                    api._conns.add(sock)
                return sock, addr

            def shutdown_request(self, request: Any) -> None:
                with api._conns_lock:
                    api._conns.discard(request)
                super().shutdown_request(request)

            def handle_error(self, request: Any, client_address: Any) -> None:
                # The stdlib prints a traceback here; Go's server logs one line.
                exc = sys.exc_info()[1]
                if api.stopping.is_set():
                    return
                host, port = (client_address or ("?", 0))[:2]
                if isinstance(exc, (ssl.SSLError, OSError)):
                    log_line(f"http: TLS handshake error from {host}:{port}: {exc}")
                else:
                    log_line(f"http: panic serving {host}:{port}: {type(exc).__name__}: {exc}")

        class _Handler(Handler):
            server_api = api
            timeout = idle_timeout

        self._httpd = _Server((host, port), _Handler)
        if ssl_context is not None:
            # The handshake runs in the connection's own thread (Handler.setup), so a slow
            # client never blocks accept().
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port: int = self._httpd.server_address[1]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"sim-apiserver-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end every watch and close every open connection."""
        self.stopping.set()
        if self._thread is not None:  # shutdown() blocks forever if serve_forever never ran
            self._httpd.shutdown()
        self._httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)


class Handler(BaseHTTPRequestHandler):
    """Per-connection request handler; all state lives on ``server_api``."""

    server_api: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "smrun-sim"
    user = ""
    identity: auth.Identity | None = None
    status_sent = 0
    body = wire.Body()
    #: Set while serving another API's view of a stored kind (events.k8s.io/v1 Events): the
    #: kind requests are authorized as, and the conversion applied to every 2xx body.
    view_kind: Kind | None = None
    view: Any = None

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, OSError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's stderr access log; ``RequestLog`` is the log."""

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's answer to a request line or header it cannot parse, in Go's form."""
        self._send_plain(wire.FramingError(code, self.responses.get(code, ("Error",))[0]))

    def _send_plain(self, exc: wire.FramingError) -> None:
        """Go net/http's answer to a request it refuses before any handler runs; then close."""
        data = exc.body.encode()
        try:
            self.wfile.write(f"HTTP/1.1 {exc.code} {exc.text}\r\nContent-Type: text/plain; "
                             f"charset=utf-8\r\nConnection: close\r\n\r\n".encode() + data)
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True
        self.status_sent = exc.code

    # ------------------------------------------------------------------ plumbing
    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if self.view is not None and 200 <= code < 300:
            body = self.view(body)
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.body.close:  # an unread rest of the body: the connection cannot be reused
            self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for text in admission.warnings():
            self.send_header("Warning", '299 - ' + json.dumps(text))
        self.end_headers()
        self.wfile.write(data)
        self.status_sent = code

    def _send_bytes(self, code: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.status_sent = code

    def _send_error(self, exc: ClusterError, route: Route | None) -> None:
        code = exc.status or 500
        details: dict[str, Any] | None = getattr(exc, "status_details", None)
        if details is None and route is not None:
            details = {"name": route.name, "group": route.kind.group, "kind": route.kind.plural}
            if not route.name:
                details.pop("name")
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        reason = exc.reason or ("" if getattr(exc, "empty_reason", False) else "InternalError")
        self._send_json(code, status_body(code, reason, str(exc), details,
                                          getattr(exc, "status_metadata", None)), headers)

    def _raw_body(self) -> bytes:
        """The body, for a handler that uses it: 413 if it was over the limit (upstream checks
        the limit when a handler reads the body, after authentication and authorization)."""
        if self.body.too_large:
            raise wire.too_large()
        return self.body.data

    def _object_body(self, route: Route) -> dict[str, Any]:
        obj = decode.decode_object(self._raw_body(), self.headers.get("Content-Type"),
                                   route.kind)
        if not isinstance(obj, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        return obj

    def _disconnected(self) -> bool:
        """Whether the client of a watch went away (EOF on its socket)."""
        conn = self.connection
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if not readable:
                return False
            if not isinstance(conn, ssl.SSLSocket):
                return bool(conn.recv(1, socket.MSG_PEEK) == b"")
            # TLS cannot peek; a watch client sends nothing, so reading is safe here.
            conn.setblocking(False)
            try:
                return bool(conn.recv(1) == b"")
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            finally:
                conn.setblocking(True)
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------ entry points
    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        api = self.server_api
        started = time.time()
        self.user, self.identity, self.status_sent = "", None, 0
        self.body = wire.Body()
        self.view_kind, self.view = None, None
        path, is_watch = self.path.split("?", 1)[0], False
        route: Route | None = None
        try:
            # Go refuses a target with a bad escape (url.ParseRequestURI) and a header line
            # without a colon (textproto); the stdlib's parser lets both through.
            if _BAD_ESCAPE.search(self.path) or self.headers.defects:
                raise wire.FramingError(400, "Bad Request")
            # Every body is read (or given up with the connection), whatever the method, so the
            # next request on a keep-alive connection starts where it should.
            self.body = wire.read_body(self.rfile, self.headers)
            if self.body.close:
                self.close_connection = True
            url = urlsplit(self.path)
            path = url.path
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            is_watch = query.get("watch") in ("true", "1")
            fault = api.faults.pick() if api.faults is not None and not is_watch else None
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "500":
                raise ClusterError("Internal error occurred: injected fault", status=500,
                                   reason="InternalError")
            if fault == "429":
                raise ClusterError("Too many requests, please try again later.", status=429,
                                   reason="TooManyRequests", retry_after=1)
            self._authenticate()
            if subresources.serve(self, method, path, query, self._raw_body()):
                return
            if self._discovery(method, path):
                return
            route = self._route(path)
            with admission.request(query.get("fieldValidation"), self.identity, route.name):
                self._serve(method, route, query, is_watch)
        except wire.FramingError as exc:
            self._send_plain(exc)
        except ClusterError as exc:
            self._send_error(exc, route)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a simulator bug: one log line and a 500, never a traceback
            log_line(f"smrun-sim {api.name}: {method} {path}: {type(exc).__name__}: {exc}")
            self.close_connection = True
            if not self.status_sent:
                try:
                    self._send_error(ClusterError(f"Internal error occurred: {exc}", status=500,
                                                  reason="InternalError"), route)
                except OSError:
                    pass
        finally:
            if api.request_log is not None:
                api.request_log.record(cluster=api.name, method=method, path=path,
                                       user=self.user, status=self.status_sent, start=started,
                                       watch=is_watch,
                                       name=_created_name(self.body.data)
                                       if method == "POST" else "",
                                       dry_run=method != "GET" and dryrun.is_dry(
                                           dryrun.from_query(self.path.partition("?")[2])))

    def _authenticate(self) -> None:
        api = self.server_api
        header = self.headers.get("Authorization") or ""
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        user = api.tokens.get(token) if token else None
        if user is not None:
            self.identity = auth.Identity.static(user)
        elif token.count(".") == 2:
            self.identity = self._service_account(token)
        if self.identity is None:
            raise ClusterError("Unauthorized", status=401, reason="Unauthorized")
        self.user = self.identity.name
        try:
            self.identity = impersonation.apply(api.store, self.identity, self.headers)
        except impersonation.WithoutUser as exc:
            raise wire.FramingError(500, "Internal Server Error",
                                    f'Internal Server Error: "{self.path}": {exc}') from None
        self.user = self.identity.name

    def _service_account(self, token: str) -> auth.Identity | None:
        """The identity of a valid TokenRequest token whose service account still exists."""
        claims = self.server_api.issuer.verify(token)
        if claims is None:
            return None
        sa = self.server_api.store.try_get("ServiceAccount", claims.namespace, claims.name)
        if sa is None or sa["metadata"].get("uid") != claims.uid:
            return None
        return auth.Identity.service_account(claims.namespace, claims.name, claims.uid,
                                             f"JTI={claims.jti}")

    def _discovery(self, method: str, path: str) -> bool:
        """Serve discovery and OpenAPI documents; ``False`` if ``path`` is not one."""
        api = self.server_api
        reg = api.store.registry
        parts = [p for p in path.split("/") if p]
        doc: Any = None
        if parts and parts[0] == "openapi":
            if method != "GET":
                return False
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            answer = openapi.serve(reg, parts, query, self.headers)
            if answer is None:
                raise _error(404, "NotFound", "the server could not find the requested resource")
            self._send_bytes(*answer)
            return True
        elif method != "GET":
            return False
        elif parts == ["version"]:
            doc = discovery.VERSION
        elif parts == ["api"]:
            doc = discovery.api_versions(f"127.0.0.1:{api.port}")
        elif parts == ["apis"]:
            doc = subresources.with_group(discovery.api_group_list(reg))
        elif parts in (["healthz"], ["readyz"], ["livez"]):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.status_sent = 200
            return True
        elif len(parts) == 2 and parts[0] == "api":
            doc = discovery.resource_list(reg, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            doc = discovery.api_group(reg, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = discovery.resource_list(reg, parts[1], parts[2])
        else:
            return False
        if doc is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        self._send_json(200, doc)
        return True

    def _route(self, path: str) -> Route:
        parts = [p for p in path.split("/") if p]
        not_found = _error(404, "NotFound", "the server could not find the requested resource")
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise not_found
        reg = self.server_api.store.registry
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = reg.by_resource(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        kind = reg.by_resource(group, version, rest[0])
        if kind is None or len(rest) > 3:
            raise not_found
        # Names and namespaces arrive percent-encoded (clients escape ':' in RBAC names).
        name = unquote(rest[1]) if len(rest) > 1 else ""
        namespace = unquote(namespace)
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not ((sub == "status" and kind.status_subresource) or
                        (sub == "scale" and kind.scale is not None) or
                        (sub == "token" and kind.kind == "ServiceAccount") or
                        (sub == "finalize" and kind.kind == "Namespace" and not kind.group)):
            raise not_found
        return Route(kind, namespace, name, sub)

    # ------------------------------------------------------------------ resources
    def _authorize(self, verb: str, route: Route) -> None:
        groups = self.identity.groups if self.identity is not None else ()
        kind = self.view_kind or route.kind
        a = auth.Attributes(self.user, verb, kind.group, kind.plural,
                            route.namespace, route.name, route.subresource, groups)
        ok, reason = auth.decide(self.server_api.store, a)
        if not ok:
            raise auth.forbidden(route.kind, a, reason)

    def _serve(self, method: str, route: Route, query: dict[str, str], is_watch: bool) -> None:
        store = self.server_api.store
        if route.kind.kind == "Event" and not route.kind.custom:
            events.sweep(store)
            if route.kind.group == "events.k8s.io":
                self._serve_event_view(method, route, query, is_watch)
                return
        k, ns, name = route.kind, route.namespace, route.name
        # Every value of dryRun counts (the parsed query keeps one per name); a write refuses any
        # but "All" (422) before touching the object, then runs whole and stores nothing.
        dry_values = dryrun.from_query(self.path.partition("?")[2])
        dry_run = dryrun.is_dry(dry_values)
        if k.deprecation:
            admission.warn(k.deprecation)
        if name and (bad_name := validation.path_segment_name(name)) is not None:
            raise _error(400, "BadRequest", bad_name)
        if not _accepts_json(self.headers.get("Accept")):
            # Answers are JSON only; a client that takes nothing else is told so, as upstream
            # tells a client asking for a media type it does not serve.
            raise _error(406, "NotAcceptable",
                         "only the following media types are accepted: application/json")
        if route.subresource == "scale":
            self._scale(method, route, dry_run, dry_values)
            return
        if route.subresource == "token":
            self._token_request(method, route)
            return
        if not name and method in ("GET", "DELETE") and query.get("fieldSelector"):
            query["fieldSelector"] = selectors.checked_field_selector(
                k, query["fieldSelector"]) or ""
        if method == "GET" and not name:
            verb = "watch" if is_watch else "list"
            self._authorize(verb, route)
            list_opts = paging.list_options(query, watch=is_watch)
            tables = printing.table_request(self.headers.get("Accept"), query)
            if is_watch:
                self._watch(route, query, list_opts, tables)
                return
            items, meta = paging.list_page(store, k, ns, list_opts)
            self._send_json(200, printing.table(tables, k, items, meta) if tables else {
                "apiVersion": k.api_version, "kind": k.list_kind_name(), "metadata": meta,
                "items": items})
            return
        if method == "GET":
            self._authorize("get", route)
            tables = printing.table_request(self.headers.get("Accept"), query)
            obj = store.get(k, ns, name)
            self._send_json(200, printing.object_table(tables, k, obj) if tables else obj)
            return
        if method == "POST" and not name:
            self._authorize("create", route)
            manager = self._manager(query, "CreateOptions", dry_values)
            body = self._object_body(route)
            if k.kind in _SELF_REVIEWS:
                self._check_identity(route, body)
                self._send_json(201, self._self_review(k.kind, body))
                return
            self._check_identity(route, body)
            if (problem := validation.decode_problem(k, body)) is not None:
                raise _error(400, "BadRequest", problem)
            admission.decode_builtin(k, body)
            body.setdefault("apiVersion", k.api_version)
            body.setdefault("kind", k.kind)
            uid = webhooks.default_job(body) if k.kind == "Job" and k.group == "batch" else None
            self._send_json(201, store.create(k, body, namespace=ns or None, dry_run=dry_run,
                                              manager=manager,
                                              validate=True, uid=uid))
            return
        if method == "PUT" and name:
            self._authorize("update", route)
            manager = self._manager(query, "UpdateOptions", dry_values)
            body = self._object_body(route)
            self._check_identity(route, body)
            if route.subresource == "finalize":
                self._send_json(200, deletion.finalize_namespace(store, name, body))
                return
            if (problem := validation.decode_problem(k, body)) is not None:
                raise _error(400, "BadRequest", problem)
            admission.decode_builtin(k, body)
            body_name = (body.get("metadata") or {}).get("name") or ""
            if body_name != name:
                raise _error(400, "BadRequest", f"the name of the object ({body_name}) does not "
                                                f"match the name on the URL ({name})")
            self._send_json(200, store.replace(k, body, namespace=ns, dry_run=dry_run,
                                               subresource=route.subresource or None,
                                               manager=manager,
                                               validate=True))
            return
        if method == "PATCH" and name:
            self._authorize("patch", route)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            ptype = PATCH_TYPES.get(ctype)
            if ptype is None:
                raise _error(415, "UnsupportedMediaType",
                             f"the body of the request was in an unknown format - accepted "
                             f"media types include: {', '.join(list(PATCH_TYPES)[:4])}")
            managedfields.validate_options("PatchOptions", query.get("fieldManager", ""),
                                           apply=ptype == "apply", force=query.get("force"),
                                           dry_run=dry_values)
            patch = decode.decode_patch(self._raw_body(), yaml_ok=ctype.endswith("yaml"))
            sub = route.subresource or None
            try:
                patched = store.patch(k, ns, name, patch, ptype, sub, dry_run=dry_run,
                                      manager=self._manager(query),
                                      force=query.get("force") == "true", validate=True)
            except patches.JsonPatchFailed as exc:
                raise exc.as_status() from None
            self._send_json(200, patched)
            return
        if method == "DELETE" and name and not route.subresource:
            self._authorize("delete", route)
            opts = deletion.delete_options(k, decode.decode_options(self._raw_body()), query,
                                           dry_values)
            if k.kind == crd.CRD_KIND and k.group == crd.GROUP:
                self._send_json(200, crd.delete(store, name, dry_run=opts.dry_run))
                return
            deletion.check_deletable(k, name)
            self._send_json(200, store.delete(k, ns, name, dry_run=opts.dry_run,
                                              propagation=opts.propagation,
                                              preconditions=opts.preconditions))
            return
        if method == "DELETE" and not name:
            self._authorize("deletecollection", route)
            opts = deletion.delete_options(k, decode.decode_options(self._raw_body()), query,
                                           dry_values)
            items = store.list(k, ns, label_selector=query.get("labelSelector"),
                               field_selector=query.get("fieldSelector"))
            for o in items:
                deletion.check_deletable(k, o["metadata"]["name"])
            done = [store.delete(k, o["metadata"].get("namespace"), o["metadata"]["name"],
                                 dry_run=opts.dry_run, propagation=opts.propagation,
                                 preconditions=opts.preconditions) for o in items]
            self._send_json(200, {"apiVersion": k.api_version, "kind": k.list_kind_name(),
                                  "metadata": {"resourceVersion": str(store.resource_version)},
                                  "items": done})
            return
        raise _error(405, "MethodNotAllowed",
                     "the server does not allow this method on the requested resource")

    def _scale(self, method: str, route: Route, dry_run: bool,
               dry_values: list[str] | None) -> None:
        """The ``scale`` subresource of a custom resource (``crd.scale_*``)."""
        store, k, ns, name = self.server_api.store, route.kind, route.namespace, route.name
        if method == "GET":
            self._authorize("get", route)
            self._send_json(200, crd.scale_get(store, k, ns, name))
            return
        if method not in ("PUT", "PATCH"):
            raise _error(405, "MethodNotAllowed",
                         "the server does not allow this method on the requested resource")
        self._authorize("update" if method == "PUT" else "patch", route)
        managedfields.validate_options("UpdateOptions" if method == "PUT" else "PatchOptions", "",
                                       dry_run=dry_values)
        body: Any = (decode.decode_patch(self._raw_body(), yaml_ok=False) if method == "PATCH"
                     else decode.decode_object(self._raw_body(), self.headers.get("Content-Type"),
                                               route.kind))
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            ptype = PATCH_TYPES.get(ctype)
            if ptype not in ("merge", "json", "strategic"):
                raise _error(415, "UnsupportedMediaType",
                             f"the body of the request was in an unknown format - accepted "
                             f"media types include: {', '.join(list(PATCH_TYPES)[:3])}")
            current = crd.scale_get(store, k, ns, name)
            body = (patches.json_patch(current, body) if ptype == "json"
                    else patches.merge_patch(current, body))
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        self._send_json(200, crd.scale_update(store, k, ns, name, body, dry_run=dry_run))

    def _manager(self, query: dict[str, str], options: str = "",
                 dry_values: list[str] | None = None) -> str:
        """The write's field manager: ``?fieldManager=``, else derived from the User-Agent;
        ``options`` (``CreateOptions``/``UpdateOptions``) validates it and ``dryRun`` first."""
        if options:
            managedfields.validate_options(options, query.get("fieldManager", ""),
                                           dry_run=dry_values)
        return query.get("fieldManager") or managedfields.manager_from_user_agent(
            self.headers.get("User-Agent") or "")

    def _serve_event_view(self, method: str, route: Route, query: dict[str, str],
                          is_watch: bool) -> None:
        """``events.k8s.io/v1`` Events: the core Event storage served through a conversion."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        raw = self._raw_body()
        if raw.strip() and decode.media_type(ctype) != decode.PROTOBUF:
            ptype = PATCH_TYPES.get(ctype)
            body = (decode.decode_patch(raw, yaml_ok=ctype.endswith("yaml")) if method == "PATCH"
                    else decode.decode_object(raw, ctype, route.kind))
            self.body = replace(self.body, data=json.dumps(events.core_request(body, ptype))
                                .encode())
        core = self.server_api.store.kind("v1/Event")
        self.view_kind, self.view = route.kind, events.view_v1
        try:
            self._serve(method, Route(core, route.namespace, route.name, route.subresource),
                        query, is_watch)
        except ClusterError as exc:
            raise type(exc)(str(exc).replace('events "', 'events.events.k8s.io "', 1),
                            status=exc.status, reason=exc.reason) from exc

    def _check_identity(self, route: Route, body: dict[str, Any]) -> None:
        k = route.kind
        if body.get("kind") not in (None, k.kind) or \
                body.get("apiVersion") not in (None, k.api_version):
            raise _error(400, "BadRequest",
                         f"the API version in the data ({body.get('apiVersion')}) does not match "
                         f"the expected API version ({k.api_version})")
        body_ns = (body.get("metadata") or {}).get("namespace")
        if k.namespaced and body_ns and route.namespace and body_ns != route.namespace:
            raise _error(400, "BadRequest", "the namespace of the provided object does not "
                                            "match the namespace sent on the request")

    def _self_review(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        store, who = self.server_api.store, self.identity
        assert who is not None
        if kind == "SelfSubjectAccessReview":
            return reviews.access_review(store, who, body)
        if kind == "SelfSubjectRulesReview":
            return reviews.rules_review(store, who, body)
        return reviews.self_review(who)

    def _token_request(self, method: str, route: Route) -> None:
        if method != "POST":
            raise _error(405, "MethodNotAllowed",
                         "the server does not allow this method on the requested resource")
        self._authorize("create", route)
        body = decode.decode_object(self._raw_body(), self.headers.get("Content-Type"),
                                    route.kind) or {}
        if not isinstance(body, dict) or body.get("kind") not in (None, "TokenRequest"):
            raise _error(400, "BadRequest", "the request body must be a TokenRequest")
        api = self.server_api
        self._send_json(201, reviews.token_request(api.store, api.issuer, route.namespace,
                                                   route.name, body))

    def _watch(self, route: Route, query: dict[str, str], opts: paging.ListOptions,
               tables: printing.TableRequest | None) -> None:
        try:
            timeout = float(query.get("timeoutSeconds") or 0) or watch.default_timeout()
        except ValueError:
            timeout = watch.default_timeout()
        paging.parse_resource_version(opts.resource_version)  # a 400 before the stream starts
        req = watch.WatchRequest(route.kind, route.namespace, opts.label_selector,
                                 opts.field_selector, opts.resource_version, timeout,
                                 opts.allow_bookmarks, opts.send_initial_events)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.status_sent = 200
        self.close_connection = True

        view = self.view

        def send(data: bytes) -> None:
            if view is not None:
                data = b"".join(_convert_line(line, view) for line in data.splitlines(True))
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            watch.stream(self.server_api.store, req, send, self._disconnected,
                         self.server_api.stopping, bookmark_every=self.server_api.bookmark_every,
                         transform=printing.WatchTables(tables, route.kind) if tables else None)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass


def _convert_line(line: bytes, view: Any) -> bytes:
    """One watch line with its object converted to another API's view."""
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if isinstance(event, dict) and isinstance(event.get("object"), dict):
        event["object"] = view(event["object"])
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header allows a JSON answer (kubectl's protobuf requests send
    ``application/vnd.kubernetes.protobuf,application/json``; a Table request names JSON too)."""
    if not accept:
        return True
    accept = accept.lower()
    return "json" in accept or "*/*" in accept or "application/*" in accept


def _created_name(raw: bytes) -> str:
    """``metadata.name`` of a JSON or protobuf create body, for the request log ("" when there
    is none)."""
    if raw.startswith(protobuf.MAGIC):
        return protobuf.object_name(raw)
    if raw[:1] != b"{":
        return ""
    try:
        meta = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return ""
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""
