"""The request guard: key, roles and body size are checked before any body is read.

FastAPI reads and parses a request's body before it runs a route's dependencies, so a
client without a key could make a service buffer a large upload just to be refused. This
pure ASGI middleware finds the route first, applies the route's declared `RoleRequirement`
(`visiondock.auth`: its role, and the scope's path, query and served-model parts) and its
byte limit (`body_limit`, or `DEFAULT_BODY_LIMIT`) to the Content-Length and to the bytes as
they stream in, and answers 401/403/413 at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path  # where Starlette defines it; its routing imports it from there
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visiondock.auth import AUTHORIZED, declared_requirement
from visiondock.errors import DomainError, InvalidInput, NotAuthenticated, TooLarge

# JSON bodies of ordinary routes (projects, labels, aliases, runs) are a few kilobytes.
DEFAULT_BODY_LIMIT = 1024 * 1024
# Deeper JSON than this is no request any client of ours sends; refusing it keeps parsers and
# validators away from Python's recursion limit.
MAX_JSON_DEPTH = 64
# Values (numbers, strings, objects, arrays) in a JSON body a route parses itself: counted on the bytes
# before the body is parsed, so a body of millions of tiny objects never becomes millions of objects.
MAX_JSON_VALUES = 100_000
# A JSON string, escapes included: what the count skips over.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# The guard remembers the route of this many recent paths (each at most this long): a request's route is
# found with one lookup instead of matching each route's pattern in turn.
ROUTE_MEMORY = 1024
ROUTE_MEMORY_PATH_LENGTH = 256

LimitOf = Callable[[FastAPI], int]
# The HTTP status of a domain error (`visiondock.web.http_status`, passed in: web installs this guard).
StatusOf = Callable[[DomainError], int]


class BodyLimit:
    """A route's byte limit, declared as a dependency: `dependencies=[Depends(body_limit(...))]`.

    The guard enforces it before the route runs; the dependency itself does nothing.
    """

    def __init__(self, limit: int | LimitOf) -> None:
        self.limit = limit

    def of(self, app: FastAPI) -> int:
        return self.limit(app) if callable(self.limit) else self.limit

    async def __call__(self) -> None:
        return None


def body_limit(limit: int | LimitOf) -> BodyLimit:
    """A dependency declaring the most bytes a route's body may have (a number, or one read from
    the app, e.g. from its settings)."""
    return BodyLimit(limit)


def _limit_of(route: Any) -> BodyLimit | None:
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dep = stack.pop()
        call = getattr(dep, "call", None)
        # `body_limit(...)` itself, or the key check of `require_role(..., body_limit=...)`
        limit = call if isinstance(call, BodyLimit) else getattr(call, "body_limit", None)
        if isinstance(limit, BodyLimit):
            return limit
        stack.extend(dep.dependencies)
    return None


def _json_error(route: Any, status: int, message: str, code: str,
                headers: dict[str, str] | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    answer = {"detail": message, "code": code}
    if getattr(route, "protocol_errors", False):  # the Open Inference Protocol's own error field
        answer["error"] = message
    body = json.dumps(answer).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, raw, body


def too_large(limit: int) -> HTTPException:
    # An HTTPException, not a domain error: raised while FastAPI reads the body, where it turns
    # any other exception into a generic 400.
    return HTTPException(413, f"the request body is over this route's {limit:,}-byte limit")


class _RoutePlan:
    """One route as the guard sees it: how to match it, and what it requires."""

    def __init__(self, context: Any) -> None:
        self.regex = context.path_regex
        self.methods = set(context.methods or ())
        if "GET" in self.methods:
            self.methods.add("HEAD")
        self.convertors = getattr(context, "param_convertors", {})
        self.protocol_errors = getattr(context.original_route, "protocol_errors", False)
        self.requirement = declared_requirement(context)
        self.limit = _limit_of(context)

    def match(self, path: str, method: str) -> dict[str, Any] | None:
        if method not in self.methods:
            return None
        matched = self.regex.match(path)
        if matched is None:
            return None
        try:
            return {name: self.convertors[name].convert(value) if name in self.convertors else value
                    for name, value in matched.groupdict().items()}
        except ValueError:
            return None


class RequestGuardMiddleware:
    """Key and byte-limit checks before the route reads its body (see the module docstring)."""

    def __init__(self, app: ASGIApp, status_of: StatusOf) -> None:
        self.app = app
        self.status_of = status_of
        self._table: list[_RoutePlan] | None = None  # built on the first request, once routes exist
        self._recent: dict[tuple[str, str], tuple[_RoutePlan, dict[str, Any]]] = {}

    def _routes(self, app: Any) -> list[_RoutePlan]:
        if self._table is None:
            self._table = [_RoutePlan(context) for context in iter_route_contexts(app.routes)
                           if getattr(context, "path_regex", None) is not None]
        return self._table

    def _route(self, scope: Scope) -> tuple[_RoutePlan, dict[str, Any]] | None:
        """The route the router will pick, with its path parameters (None: 404 or 405)."""
        path, method = get_route_path(scope), scope["method"]
        remembered = self._recent.get((path, method))
        if remembered is not None:
            return remembered[0], dict(remembered[1])
        for plan in self._routes(scope["app"]):
            found = plan.match(path, method)
            if found is not None:
                if len(path) <= ROUTE_MEMORY_PATH_LENGTH:
                    if len(self._recent) >= ROUTE_MEMORY:
                        self._recent.clear()
                    self._recent[(path, method)] = (plan, found)
                return plan, dict(found)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self._route(scope)
        if found is None:  # 404 or 405: the router answers without reading a body
            await self.app(scope, receive, send)
            return
        route, path_params = found
        app = scope["app"]
        requirement, declared = route.requirement, route.limit
        headers = Headers(scope=scope)
        try:
            if requirement is not None:
                query = QueryParams(scope.get("query_string", b""))
                principal = requirement.authorize(app.state.keyring, scope["method"], headers, path_params, app,
                                                  query)
                scope.setdefault("state", {})["principal"] = principal
                # The route's key check (`visiondock.web.require_role`) need not hash the key again; it checks
                # the scope's body part once FastAPI has read the body.
                scope["state"][AUTHORIZED] = requirement
        except DomainError as exc:
            challenge = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
            await _answer(send, *_json_error(route, self.status_of(exc), exc.message, exc.code, challenge))
            return
        if scope.get("method") in _BODYLESS and declared is None:
            await self.app(scope, receive, send)
            return
        limit = declared.of(app) if declared is not None else DEFAULT_BODY_LIMIT
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            if length.isdigit():
                await _answer(send, *_json_error(route, 413, str(too_large(limit).detail), "payload_too_large"))
            else:
                await _answer(send, *_json_error(route, 400, "Content-Length is not a number", "bad_request"))
            return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing (413) once the streamed body passes `limit` (chunked uploads)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return counted


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def check_json_depth(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """400 when parsed JSON nests deeper than `max_depth` (iterative: deep input cannot recurse)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise InvalidInput(f"the JSON nests deeper than {max_depth} levels", code="too_deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def clip_json_depth(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`value` with whatever nests deeper than `max_depth` replaced by a note: stored data from before
    the depth limit still reads (answers serialize at most about 250 levels). Iterative: deep input
    cannot recurse."""
    try:
        check_json_depth(value, max_depth)
        return value
    except InvalidInput:
        pass
    note = f"(left out: nested deeper than {max_depth} levels)"

    def container(item: Any) -> Any:
        return {} if isinstance(item, dict) else []

    root = container(value)
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in items:
            if isinstance(child, dict | list):
                copied = note if depth + 1 > max_depth else container(child)
                if copied is not note:
                    stack.append((child, copied, depth + 1))
            else:
                copied = child
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def bounded_depth(value: Any) -> Any:
    """A pydantic validator: ValueError when parsed JSON nests deeper than MAX_JSON_DEPTH."""
    try:
        check_json_depth(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value


async def json_body_depth(request: Request) -> None:
    """A dependency the app factory gives every route: a JSON body FastAPI parsed for the route is
    refused (400) when it nests deeper than MAX_JSON_DEPTH, before any validation or route sees it.
    Routes that read their bodies themselves parse them with `loads_bounded`."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or request.method in _BODYLESS:
        return
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and not (kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))):
        return
    try:
        value = await request.json()  # FastAPI's own parse, kept on the request
    except (ValueError, RecursionError):
        return  # FastAPI has answered it already
    check_json_depth(value)


def count_json_values(body: bytes) -> int:
    """About how many values a JSON text's arrays and objects hold side by side (a `,` outside strings
    separates two), without parsing it. Nesting is the depth limit's business."""
    return _JSON_STRING.sub(b'""', body).count(b",") + 1


def loads_bounded(body: bytes | str, what: str = "the body", max_depth: int | None = MAX_JSON_DEPTH,
                  max_values: int | None = MAX_JSON_VALUES) -> Any:
    """json.loads with clear 400s for invalid and for too deeply nested JSON, and a 413 for a body of
    more than `max_values` values, counted before it is parsed. `max_depth=None` (tensors: millions of
    numbers) skips the walk over the parsed value and the count, and only refuses what the parser
    itself cannot nest."""
    if max_depth is not None and max_values is not None:
        values = count_json_values(body.encode() if isinstance(body, str) else body)
        if values > max_values:
            raise TooLarge(f"{what} holds about {values:,} JSON values; the limit is {max_values:,}",
                           code="too_many_values")
    try:
        value = json.loads(body)
    except RecursionError:
        raise InvalidInput(f"{what}: the JSON nests too deeply", code="too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if max_depth is not None:
        check_json_depth(value, max_depth)
    return value
