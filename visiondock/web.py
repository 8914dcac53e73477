"""What every service app shares: the app factory, API-key auth, health, metrics, errors.

Every error leaves a service as JSON `{"detail": "<what is wrong>", "code": "<kind>"}`
with a 4xx status when the caller can fix it, so clients read one shape everywhere.
Logic modules raise `visiondock.errors` kinds and storage errors; this module alone
turns them into HTTP statuses (`http_status`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from visiondock.errors import (
    Conflict,
    DomainError,
    InvalidContent,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Outdated,
    TimedOut,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from visiondock.settings import Settings
from visiondock.storage import (
    BlobNotFoundError,
    ConflictError,
    DocumentNotFoundError,
    InvalidBlobKeyError,
    InvalidQueryError,
    PreconditionFailedError,
    Stores,
)
from visiondock.telemetry import RequestTelemetryMiddleware, ServiceMetrics, configure_logging

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
DOCS_ASSETS_URL = "/docs-assets"
# Azure AI Search sends its key in this header to custom skills.
AZURE_KEY_HEADER = "Ocp-Apim-Subscription-Key"


# The HTTP status of each kind of error; for an error of several kinds, the first in its MRO.
HTTP_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    NotAuthenticated: 401,
    NotFound: 404,
    Conflict: 409,
    Outdated: 412,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidContent: 422,
    Unavailable: 503,
    TimedOut: 504,
}


def http_status(error: DomainError) -> int:
    """The status a caller gets for `error` (also per item, in batch and skill answers)."""
    return next((HTTP_STATUS[kind] for kind in type(error).__mro__ if kind in HTTP_STATUS), 400)


def error_response(status: int, message: str, code: str,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, "code": code, **extra}, status_code=status, headers=headers)


def domain_error_response(exc: DomainError, **extra: Any) -> JSONResponse:
    """`exc` as its status and `{"detail", "code", ...its details}`; `extra` adds fields."""
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(http_status(exc), exc.message, exc.code, headers=headers or None, **exc.details, **extra)


# -- auth -------------------------------------------------------------------------
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key of this deployment.")
_bearer = HTTPBearer(auto_error=False, description="The same API key, as `Authorization: Bearer <key>`.")


async def require_api_key(
    request: Request,
    api_key: str | None = Security(_api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> None:
    """Accept an API key from `X-API-Key`, `Authorization: Bearer` or the Azure skill header."""
    presented = api_key or (bearer.credentials if bearer else None) or request.headers.get(AZURE_KEY_HEADER)
    if not presented:
        raise NotAuthenticated(f"missing API key: send it in the {API_KEY_HEADER} header")
    settings: Settings = request.app.state.settings
    if not any(hmac.compare_digest(presented.encode(), key.encode()) for key in settings.api_keys):
        raise NotAuthenticated("invalid API key")


# -- readiness --------------------------------------------------------------------
@dataclass
class Readiness:
    ready: bool
    details: dict[str, Any] = field(default_factory=dict)


ReadinessCheck = Callable[[FastAPI], Readiness]


def storage_readiness(app: FastAPI) -> Readiness:
    """Ready once the service's parts are built on its open stores (the default check)."""
    ready = bool(getattr(app.state, "started", False))
    return Readiness(ready, {"storage": "open" if ready else "starting"})


# -- error handlers ---------------------------------------------------------------
def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "request"


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field_name(tuple(err.get("loc", ()))), "message": err.get("msg", "invalid")}
              for err in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return error_response(422, message, "invalid_request", errors=errors)


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


# Codes for the statuses the framework answers itself (unknown route, unparsable form...).
_FRAMEWORK_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 409: "conflict",
                    412: "precondition_failed", 413: "payload_too_large", 415: "unsupported_media_type",
                    422: "invalid_request", 429: "too_many_requests", 503: "unavailable"}


async def _on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), _FRAMEWORK_CODES.get(exc.status_code, "error"),
                          headers=exc.headers)


async def _on_storage_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DocumentNotFoundError | BlobNotFoundError):
        return error_response(404, str(exc), "not_found")
    if isinstance(exc, PreconditionFailedError):
        return error_response(412, f"{exc}; read it again and retry", "precondition_failed")
    if isinstance(exc, ConflictError):
        return error_response(409, str(exc), "conflict")
    return error_response(400, str(exc), "bad_request")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error; the service logged the details", "internal_error")


# -- the app factory --------------------------------------------------------------
# What a service builds on its stores at startup, as attributes its routes find on `app.state`.
PartsBuilder = Callable[[Stores], Mapping[str, Any]]
# Anything else the service runs while it serves (worker threads, clients), with its cleanup.
ServiceLifespan = Callable[[FastAPI, Stores], AbstractAsyncContextManager[None]]


def _hoist_inline_definitions(app: FastAPI) -> None:
    """Move the `$defs` of hand-written request schemas (`openapi_extra`) into `components/schemas`,
    where their `#/components/schemas/...` references point; ReDoc stops at a dangling one."""
    generate = app.openapi

    def hoist(node: Any, components: dict[str, Any]) -> None:
        if isinstance(node, dict):
            for name, definition in node.pop("$defs", {}).items():
                components.setdefault(name, definition)
                hoist(definition, components)
            for value in node.values():
                hoist(value, components)
        elif isinstance(node, list):
            for value in node:
                hoist(value, components)

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI caches it: hoisting twice finds nothing left to move
        hoist(schema.get("paths", {}), schema.setdefault("components", {}).setdefault("schemas", {}))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


DOCS_PAGES = frozenset({"/docs", "/redoc"})
# ReDoc's sidebar shows a logo from its CDN; the browser must not even try to fetch it.
DOCS_CONTENT_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                       "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:")


async def _docs_stay_local(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    if request.url.path in DOCS_PAGES:
        response.headers["Content-Security-Policy"] = DOCS_CONTENT_POLICY
    return response


def create_service_app(
    *,
    service: str,
    settings: Settings,
    description: str,
    routers: Sequence[APIRouter],
    parts: PartsBuilder | None = None,
    lifespan: ServiceLifespan | None = None,
    readiness: ReadinessCheck = storage_readiness,
    version: str = "0.1.0",
) -> FastAPI:
    """A FastAPI app with the shared plumbing around the service's `routers`.

    At startup it opens the stores (`Stores`: each on first use), sets what `parts` builds on
    them as `app.state` attributes, then enters the service's `lifespan`; at shutdown it
    undoes all that in reverse and closes the stores. Open without a key: `/healthz`,
    `/readyz` (probes) and the API docs. Everything else, `/metrics` included, needs an
    API key (routers add `Depends(require_api_key)`).
    """
    configure_logging(service, level=settings.log_level, fmt=settings.log_format)
    metrics = ServiceMetrics(service)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if settings.uses_local_key:
            log.warning("accepting the built-in local development API key; set VISIONDOCK_API_KEYS for real use")
        stores = Stores(settings)
        built: Mapping[str, Any] = {}
        try:
            built = parts(stores) if parts is not None else {}
            for name, part in built.items():
                setattr(app.state, name, part)
            async with lifespan(app, stores) if lifespan is not None else nullcontext():
                app.state.started = True
                try:
                    yield
                finally:
                    app.state.started = False
        finally:
            for name in built:
                setattr(app.state, name, None)
            stores.close()

    # Swagger UI and ReDoc from assets shipped in the fastapi-offline wheel: FastAPI's own pages load
    # them from a CDN, which leaves /docs blank on a machine without internet.
    # Swagger UI's validator badge would send the spec to validator.swagger.io: off.
    app = FastAPIOffline(title=f"VisionDock {service}", description=description, version=version, lifespan=run,
                         static_url=DOCS_ASSETS_URL, swagger_ui_parameters={"validatorUrl": None})
    app.middleware("http")(_docs_stay_local)
    _hoist_inline_definitions(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.started = False
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    for storage_error in (DocumentNotFoundError, BlobNotFoundError, ConflictError, InvalidQueryError,
                          InvalidBlobKeyError):
        app.add_exception_handler(storage_error, _on_storage_error)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="Readiness: the service can do its work",
             responses={503: {"description": "Not ready yet; the body says why."}})
    async def readyz(response: Response) -> dict[str, Any]:
        state = readiness(app)
        response.status_code = 200 if state.ready else 503
        return {"status": "ready" if state.ready else "not ready", "service": service, **state.details}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", dependencies=[Security(require_api_key)],
             response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
