"""What every service app shares: the app factory, API-key auth, health, metrics, errors.

Every error leaves a service as JSON `{"detail": "<what is wrong>", "code": "<kind>"}`
with a 4xx status when the caller can fix it, so clients read one shape everywhere.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from visiondock.errors import ApiError, default_code
from visiondock.settings import Settings
from visiondock.storage import (
    BlobNotFoundError,
    ConflictError,
    DocumentNotFoundError,
    InvalidBlobKeyError,
    InvalidQueryError,
    PreconditionFailedError,
)
from visiondock.telemetry import RequestTelemetryMiddleware, ServiceMetrics, configure_logging

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
DOCS_ASSETS_URL = "/docs-assets"
# Azure AI Search sends its key in this header to custom skills.
AZURE_KEY_HEADER = "Ocp-Apim-Subscription-Key"


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, "code": code or default_code(status), **extra},
                        status_code=status, headers=headers)


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
        raise ApiError(f"missing API key: send it in the {API_KEY_HEADER} header", status=401,
                       headers={"WWW-Authenticate": "Bearer"})
    settings: Settings = request.app.state.settings
    if not any(hmac.compare_digest(presented.encode(), key.encode()) for key in settings.api_keys):
        raise ApiError("invalid API key", status=401, headers={"WWW-Authenticate": "Bearer"})


# -- readiness --------------------------------------------------------------------
@dataclass
class Readiness:
    ready: bool
    details: dict[str, Any] = field(default_factory=dict)


ReadinessCheck = Callable[[FastAPI], Readiness]


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


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.code, headers=exc.headers)


async def _on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


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
    readiness: ReadinessCheck,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    version: str = "0.1.0",
) -> FastAPI:
    """A FastAPI app with the shared plumbing; the service adds its routers.

    Open without a key: `/healthz`, `/readyz` (probes) and the API docs. Everything else,
    `/metrics` included, needs an API key (routers add `Depends(require_api_key)`).
    """
    configure_logging(service, level=settings.log_level, fmt=settings.log_format)
    metrics = ServiceMetrics(service)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if settings.uses_local_key:
            log.warning("accepting the built-in local development API key; set VISIONDOCK_API_KEYS for real use")
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

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
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    for storage_error in (DocumentNotFoundError, BlobNotFoundError, ConflictError, InvalidQueryError,
                          InvalidBlobKeyError):
        app.add_exception_handler(storage_error, _on_storage_error)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="Readiness: the service can do its work")
    async def readyz() -> JSONResponse:
        state = readiness(app)
        body = {"status": "ready" if state.ready else "not ready", "service": service, **state.details}
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", dependencies=[Security(require_api_key)])
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
