"""What every service app shares: the app factory, API-key auth, health, metrics, errors.

Every error leaves a service as JSON `{"detail": "<what is wrong>", "code": "<kind>"}`
with a 4xx status when the caller can fix it, so clients read one shape everywhere.
Logic modules raise `visiondock.errors` kinds and storage errors; this module alone
turns them into HTTP statuses (`http_status`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visiondock.auth import (
    ANONYMOUS_CALLER,
    API_KEY_HEADER,
    AUTHORIZED,
    BY_PATH,
    EVERYTHING,
    NOTHING,
    ROLES,
    KeyRing,
    Principal,
    ResourceScope,
    Role,
    RoleRequirement,
    RunKeys,
    declared_requirement,
    presented_key,
    read_entries_file,
    split_entries,
)
from visiondock.errors import (
    Conflict,
    DomainError,
    Forbidden,
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
from visiondock.images import limit_concurrent_decodes
from visiondock.limits import BodyLimit, LimitOf, RequestGuardMiddleware, json_body_depth
from visiondock.permissions import permissions
from visiondock.settings import LOCAL_DEV_API_KEY, Settings
from visiondock.storage import (
    BlobNotFoundError,
    ConflictError,
    DocumentError,
    DocumentNotFoundError,
    InvalidBlobKeyError,
    InvalidQueryError,
    PreconditionFailedError,
    Stores,
)
from visiondock.telemetry import MetricsServer, RequestTelemetryMiddleware, ServiceMetrics, configure_logging

log = logging.getLogger(__name__)

DOCS_ASSETS_URL = "/docs-assets"


# The HTTP status of each kind of error; for an error of several kinds, the first in its MRO.
HTTP_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400,
    NotAuthenticated: 401,
    Forbidden: 403,
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
                   headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
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
# How a key may be presented, as the API documents show it on every route that declares a role.
KEY_SCHEMES = (_api_key_header, _bearer)


class KeyCheck:
    """The dependency `require_role` returns: checks the request's key against `requirement`; with
    `body_limit`, it also declares the route's byte limit (read by the request guard)."""

    def __init__(self, requirement: RoleRequirement, body_limit: BodyLimit | None = None) -> None:
        self.requirement = requirement  # read by the request guard and the permission table
        self.body_limit = body_limit

    # The key schemes are documented from the permission table (`_document_key_schemes`), not declared here as
    # `Security` parameters: FastAPI would solve them as two more dependencies on every request.
    async def __call__(self, request: Request) -> Principal:
        requirement = self.requirement
        state = request.scope.get("state") or {}
        checked = state.get(AUTHORIZED)
        if checked is not None:  # the guard applied the route's declaration (this one, or one overriding it)
            principal: Principal = state["principal"]
            if checked is requirement:
                await requirement.check_after_body(request, principal)
            return principal
        principal = requirement.authorize(request.app.state.keyring, request.method, request.headers,
                                          request.path_params, request.app, request.query_params)
        request.state.principal = principal
        await requirement.check_after_body(request, principal)
        return principal


def require_role(*roles: Role, readers: tuple[Role, ...] = (), azure_header: bool = False,
                 resource: Callable[[FastAPI, Mapping[str, Any]], str | None] | None = None,
                 scope: ResourceScope = BY_PATH, body_limit: int | LimitOf | None = None,
                 ) -> KeyCheck:
    """A route's permission, as a dependency: the request's key must have one of `roles` (GET:
    also `readers`) and its scope must cover what `scope` says the request touches (see
    `visiondock.auth.ResourceScope`; by default the path's project or model). Declared on a router it
    holds for the router's routes that declare none of their own.

    The request guard applies the role and the scope's path part before the body is read and says
    so on the request; this dependency then checks the scope's body part. Where the guard has not
    (an app without it), this dependency checks everything itself. Either way the key's
    Principal is on `request.state.principal`.

    `body_limit` also declares the route's byte limit (as `visiondock.limits.body_limit` does) in
    this one dependency: FastAPI solves every dependency of a route on each request.
    """
    requirement = RoleRequirement(*roles, readers=readers, azure_header=azure_header, resource=resource,
                                  scope=scope)
    return KeyCheck(requirement, BodyLimit(body_limit) if body_limit is not None else None)


async def current_principal(request: Request) -> Principal:
    """The caller, as the route's key check identified it."""
    principal: Principal = request.state.principal
    return principal


Caller = Annotated[Principal, Depends(current_principal)]


def caller_name(request: Request) -> str:
    """The name of the API key that made the request (named keys), else ANONYMOUS_CALLER."""
    principal = getattr(request.state, "principal", None)
    name = getattr(principal, "name", None)
    return name if isinstance(name, str) and name else ANONYMOUS_CALLER


# A change made over what the caller read: refused (412) when it has changed since.
IfMatch = Annotated[str | None, Header(description="The ETag of what is changed (an image, a review item, an "
                                                   "alias) as last read; the change fails with 412 if it has "
                                                   "changed since.")]

# Any valid key, whatever its roles, on a route that touches no project or model.
require_api_key = require_role(*ROLES, scope=NOTHING)
# Metrics count every served model's answers by label: a key of any role, but for everything.
_METRICS_PERMISSION = require_role(*ROLES, scope=EVERYTHING)


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


def keyring_of(settings: Settings) -> KeyRing:
    """The keys a service accepts (run keys too, with a run key secret); refuses the built-in key
    beside Azure backends and in production."""
    problem = settings.accepted_keys_problem()
    if problem is not None:
        raise ValueError(problem)
    if settings.uses_local_key and settings.uses_azure:
        raise ValueError("the built-in local development key is refused with Azure backends: set "
                         "VISIONDOCK_API_KEYS or VISIONDOCK_API_KEY_ENTRIES (see docs/security.md)")
    entries = split_entries(settings.api_key_entries) + read_entries_file(settings.api_keys_file)
    secret = settings.run_key_secret_bytes()
    return KeyRing.from_sources(plain_keys=settings.api_keys, entries=entries, local_key=LOCAL_DEV_API_KEY,
                                run_keys=RunKeys(secret) if secret is not None else None)


# -- the app factory --------------------------------------------------------------
# What a service builds on its stores at startup, as attributes its routes find on `app.state`.
PartsBuilder = Callable[[Stores], Mapping[str, Any]]
# Anything else the service runs while it serves (worker threads, clients), with its cleanup.
ServiceLifespan = Callable[[FastAPI, Stores], AbstractAsyncContextManager[None]]


def _document_key_schemes(app: FastAPI) -> None:
    """Show KEY_SCHEMES on every operation whose route declares a role (`require_role`), and in the
    components, as FastAPI shows the schemes of `Security` dependencies (Swagger UI's Authorize button)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI caches it: declaring twice writes the same again
        schemes = {scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
                   for scheme in KEY_SCHEMES}
        paths = schema.get("paths", {})
        declared = False
        for context in iter_route_contexts(app.routes):
            if context.methods is None or declared_requirement(context) is None:
                continue
            for method in context.methods:
                operation = paths.get(context.path_format, {}).get(method.lower())
                if operation is not None:
                    operation["security"] = [{name: []} for name in schemes]
                    declared = True
        if declared:
            schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(schemes)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the schema


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

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the schema


DOCS_PAGES = frozenset({"/docs", "/redoc"})
# ReDoc's sidebar shows a logo from its CDN; the browser must not even try to fetch it.
DOCS_CONTENT_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                       "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:")


def _keep_docs_local(app: FastAPI) -> None:
    """Add DOCS_CONTENT_POLICY to the docs pages' responses, by wrapping those routes' ASGI apps: a
    middleware would sit in every request's path. Pure ASGI, not a Starlette `BaseHTTPMiddleware`: that
    wraps `receive`, and would turn the request guard's 413 for a streamed body into a 400."""

    def with_policy(inner: ASGIApp) -> ASGIApp:
        async def docs_page(scope: Scope, receive: Receive, send: Send) -> None:
            async def send_with_policy(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message)["Content-Security-Policy"] = DOCS_CONTENT_POLICY
                await send(message)

            await inner(scope, receive, send_with_policy)

        return docs_page

    for route in app.router.routes:
        if isinstance(route, Route) and route.path in DOCS_PAGES:
            route.app = with_policy(route.app)


def _parses_bodies(router: APIRouter) -> bool:
    """Whether a route of `router` (or of a router included in it) has a body FastAPI parses."""
    for route in router.routes:
        inner = getattr(route, "original_router", None)  # an included router, kept whole by FastAPI
        if (inner is not None and _parses_bodies(inner)) or getattr(route, "body_field", None) is not None:
            return True
    return False


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
    open_paths: Sequence[str] = (),
) -> FastAPI:
    """A FastAPI app with the shared plumbing around the service's `routers`.

    At startup it opens the stores (`Stores`: each on first use), sets what `parts` builds on
    them as `app.state` attributes, then enters the service's `lifespan`; at shutdown it
    undoes all that in reverse and closes the stores. Open without a key: `/healthz`,
    `/readyz` (probes), the API docs and the service's `open_paths` (static pages holding no
    data). Every other route, `/metrics` included, declares its permission (`require_role(...)`
    on the route or its router: roles and scope) and needs a key that has it; a route that
    declares none stops the app from being built and from starting (visiondock.permissions).
    """
    configure_logging(service, level=settings.log_level, fmt=settings.log_format)
    keyring = keyring_of(settings)
    limit_concurrent_decodes(settings.max_concurrent_decodes)
    metrics = ServiceMetrics(service)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        app.state.permissions = permissions(app, open_paths)  # with the routes added after the factory
        if settings.uses_local_key:
            log.warning("accepting the built-in local development API key; set VISIONDOCK_API_KEYS for real use")
        stores = Stores(settings)
        built: Mapping[str, Any] = {}
        # /metrics without a key on a port of its own, for a scraper (VISIONDOCK_METRICS_PORT).
        scrape = MetricsServer(metrics.registry, settings.metrics_port).start() if settings.metrics_port else None
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
            if scrape is not None:
                scrape.stop()

    # Swagger UI and ReDoc from assets shipped in the fastapi-offline wheel: FastAPI's own pages load
    # them from a CDN, which leaves /docs blank on a machine without internet.
    # Swagger UI's validator badge would send the spec to validator.swagger.io: off.
    app = FastAPIOffline(title=f"VisionDock {service}", description=description, version=version, lifespan=run,
                         static_url=DOCS_ASSETS_URL, swagger_ui_parameters={"validatorUrl": None})
    _keep_docs_local(app)
    _document_key_schemes(app)
    _hoist_inline_definitions(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.keyring = keyring
    # Inside telemetry, so its refusals are logged and counted.
    app.add_middleware(RequestGuardMiddleware, status_of=http_status)
    app.state.started = False
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    # DocumentError last: ids the edge let through but a store refuses are the caller's mistake.
    for storage_error in (DocumentNotFoundError, BlobNotFoundError, ConflictError, InvalidQueryError,
                          InvalidBlobKeyError, DocumentError):
        app.add_exception_handler(storage_error, _on_storage_error)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"],
             summary="Readiness: the service can do its work (details with an unscoped key)",
             responses={503: {"description": "Not ready yet; with a key, the body says why."}})
    async def readyz(request: Request) -> JSONResponse:
        state = readiness(app)
        body = {"status": "ready" if state.ready else "not ready", "service": service}
        # Probes need only the verdict; what is loaded and from where (labels of every served model, URLs)
        # needs a key for everything, as /metrics does.
        key = presented_key(request.headers, azure_header=False)
        caller = keyring.identify(key) if key is not None else None
        if caller is not None and caller.unscoped:
            body.update(state.details)
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", dependencies=[Security(_METRICS_PERMISSION)],
             response_class=PlainTextResponse, responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                                                       "description": "Prometheus text exposition."}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        # JSON bodies nest at most MAX_JSON_DEPTH levels on every route of every service: where FastAPI parses
        # them, this dependency checks; routes that read their bodies themselves parse them with `loads_bounded`.
        # A router without the former solves no dependency per request for it.
        app.include_router(router, dependencies=[Depends(json_body_depth)] if _parses_bodies(router) else [])
    app.state.open_paths = tuple(open_paths)
    app.state.permissions = permissions(app, open_paths)
    return app
