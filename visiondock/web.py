"""What every service app shares: the app factory, API-key auth, health, metrics, errors.

Every error leaves a service as JSON `{"detail": "<what is wrong>", "code": "<kind>"}`
with a 4xx status when the caller can fix it, so clients read one shape everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from visiondock.auth import (
    API_KEY_HEADER,
    ROLES,
    KeyRing,
    Principal,
    Role,
    RoleRequirement,
    presented_key,
    read_entries_file,
    split_entries,
)
from visiondock.errors import ApiError, default_code
from visiondock.limits import RequestGuardMiddleware
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.storage import (
    BlobNotFoundError,
    ConflictError,
    DocumentError,
    DocumentNotFoundError,
    InvalidBlobKeyError,
    InvalidQueryError,
    PreconditionFailedError,
)
from visiondock.telemetry import RequestTelemetryMiddleware, ServiceMetrics, configure_logging

log = logging.getLogger(__name__)



def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": message, "code": code or default_code(status), **extra},
                        status_code=status, headers=headers)


# -- auth -------------------------------------------------------------------------
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key of this deployment.")
_bearer = HTTPBearer(auto_error=False, description="The same API key, as `Authorization: Bearer <key>`.")


def require_role(*roles: Role, readers: tuple[Role, ...] = (), azure_header: bool = False,
                 resource: Callable[[FastAPI], str | None] | None = None) -> Callable[..., Any]:
    """A dependency: the request's key must have one of `roles` (see `visiondock.auth`).

    The request guard applies the same check before the body is read; this dependency
    repeats it (one hash) so a route is protected even where the guard is not installed,
    and puts the key's Principal on `request.state.principal`.
    """
    requirement = RoleRequirement(*roles, readers=readers, azure_header=azure_header, resource=resource)

    async def check_key(
        request: Request,
        api_key: str | None = Security(_api_key_header),
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
    ) -> Principal:
        principal = requirement.authorize(request.app.state.keyring, request.method, request.headers,
                                          request.path_params, request.app)
        request.state.principal = principal
        return principal

    check_key.requirement = requirement  # type: ignore[attr-defined]
    return check_key


def current_principal(request: Request) -> Principal:
    """The caller, as the route's key check identified it."""
    return request.state.principal


Caller = Annotated[Principal, Depends(current_principal)]

# Any valid key, whatever its roles (metrics scrapes).
require_api_key = require_role(*ROLES)


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


def keyring_of(settings: Settings) -> KeyRing:
    """The keys a service accepts; refuses the built-in key beside Azure backends."""
    if settings.uses_local_key and settings.uses_azure:
        raise ValueError("the built-in local development key is refused with Azure backends: set "
                         "VISIONDOCK_API_KEYS or VISIONDOCK_API_KEY_ENTRIES (see docs/security.md)")
    entries = split_entries(settings.api_key_entries) + read_entries_file(settings.api_keys_file)
    return KeyRing.from_sources(plain_keys=settings.api_keys, entries=entries, local_key=LOCAL_DEV_API_KEY)


# -- the app factory --------------------------------------------------------------
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
    keyring = keyring_of(settings)
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

    app = FastAPI(title=f"VisionDock {service}", description=description, version=version, lifespan=run)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.keyring = keyring
    app.add_middleware(RequestGuardMiddleware)  # inside telemetry, so refusals are logged and counted
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    # DocumentError last: ids the edge let through but a store refuses are the caller's mistake.
    for storage_error in (DocumentNotFoundError, BlobNotFoundError, ConflictError, InvalidQueryError,
                          InvalidBlobKeyError, DocumentError):
        app.add_exception_handler(storage_error, _on_storage_error)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="Readiness: the service can do its work (details with a key)",
             responses={503: {"description": "Not ready yet."}})
    async def readyz(request: Request) -> JSONResponse:
        state = readiness(app)
        body = {"status": "ready" if state.ready else "not ready", "service": service}
        # Probes need only the verdict; what is loaded and from where (labels, URLs) needs a key.
        key = presented_key(request.headers, azure_header=False)
        if key is not None and keyring.identify(key) is not None:
            body.update(state.details)
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", dependencies=[Security(require_api_key)],
             response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                                                       "description": "Prometheus text exposition."}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
