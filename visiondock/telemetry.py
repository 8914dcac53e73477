"""Structured JSON logs, Prometheus metrics and the per-request middleware.

Each service app owns a `CollectorRegistry`, so several apps can live in one test
process without clashing metric names, and `/metrics` shows only that service.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

access_log = logging.getLogger("visiondock.access")


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "json") -> None:
    """One handler on the root logger: JSON lines (or plain text for a terminal) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                datefmt="%Y-%m-%dT%H:%M:%S%z",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access lines would duplicate ours, without the route or request id.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # The Azure SDKs log every HTTP request at INFO.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


class ServiceMetrics:
    """The metrics every service exports; services add their own to `registry`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "visiondock_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "visiondock_http_request_duration_seconds",
            "Time from request start to the last byte of the response, by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "visiondock_http_requests_in_flight", "Requests being handled now.", registry=self.registry
        )
        Gauge("visiondock_service_info", "The service this process runs.", ["service"],
              registry=self.registry).labels(service=service).set(1)
        # Each (route, method, status)'s series, looked up once: `labels()` validates and locks on every call.
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        series = self._answered.get((route, method, status))
        if series is None:
            series = (self.requests.labels(route=route, method=method, status=str(status)),
                      self.latency.labels(route=route, method=method))
            self._answered[(route, method, status)] = series
        series[0].inc()
        series[1].observe(seconds)


class MetricsServer:
    """GET /metrics of one registry on a port of its own, without a key (VISIONDOCK_METRICS_PORT).

    A Prometheus in the cluster scrapes it as it scrapes Triton's metrics port; no Service or Ingress
    routes it, and a NetworkPolicy lets only the scraper in. The API port's /metrics keeps needing a key.
    Bound with SO_REUSEPORT, so each worker process of a service can serve its own (a scrape reaches one).
    """

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> None:
        self.registry = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served on this port")
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes every few seconds: not logged
                pass

        self._server = ThreadingHTTPServer((host, port), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-port", daemon=True)

    def start(self) -> MetricsServer:
        try:
            self._server.server_bind()
            self._server.server_activate()
        except OSError:
            self._server.server_close()
            raise
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class RequestTelemetryMiddleware:
    """Pure ASGI middleware: a request id, one access log line and metrics per request.

    Pure ASGI rather than BaseHTTPMiddleware so streaming responses and the scoring hot
    path pay no extra task per request.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _header(scope, REQUEST_ID_HEADER) or _request_ids.new()
        status = 500
        self.metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.answered(route, method, status, elapsed)
            if route not in _QUIET_ROUTES or status >= 400:
                access_log.info(
                    "%s %s -> %d in %.1f ms", method, scope.get("path"), status, elapsed * 1000,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "path": scope.get("path"),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                        "key": _key_name(scope),
                    },
                )


class RequestIds:
    """Ids for requests that bring none: 32 hex digits, a random prefix of this process then a count.

    Unique without a system call per request (uuid4's os.urandom gives up the GIL, and the event loop
    waits to get it back from busy threads); a forked process draws a prefix of its own.
    """

    def __init__(self) -> None:
        self._restart()
        os.register_at_fork(after_in_child=self._restart)

    def _restart(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


_request_ids = RequestIds()


# Probes and scrapes arrive every few seconds; logging each would drown the real traffic.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


def _key_name(scope: Scope) -> str | None:
    """The name of the API key the request presented (never the key), once it was checked."""
    principal = (scope.get("state") or {}).get("principal")
    name = getattr(principal, "name", None)
    return name if isinstance(name, str) else None


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == wanted:
            return value.decode("latin-1")[:128]
    return None

