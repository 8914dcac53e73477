"""The OpenAPI document says what the services really answer.

FastAPI documents the success response and its own validation error shape; our services
answer every error as `{"detail": "<text>", "code": "<kind>"}` (422s add `errors`), and
a route can also answer what its shared plumbing decides: 401/403 from the key check,
404 for a path naming nothing, 413 from the body limit, 409/412 from stale etags, 503
while storage or the model is not there. `document_api` adds those to each operation by
what the operation has (a key, path parameters, a body), replaces the validation error
schema with ours, and declares the links from create operations to the reads of what
they created, which clients and stateful fuzzers follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

ERROR_SCHEMA = "ErrorBody"
REF_TEMPLATE = "#/components/schemas/{model}"
_ERROR_BODY = {
    "title": ERROR_SCHEMA,
    "type": "object",
    "required": ["detail", "code"],
    "properties": {
        "detail": {"type": "string", "description": "What is wrong, for a person."},
        "code": {"type": "string", "description": "The kind of error, for a program."},
        "errors": {"type": "array", "description": "Each invalid field (422).", "items": {
            "type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
        "error": {"type": "string", "description": "The same text, in the Open Inference Protocol's field (/v2)."},
    },
}
_DESCRIPTIONS = {
    400: "The request is malformed (the detail says how).",
    401: "No API key, or an unknown one.",
    403: "The key lacks the role, or the scope, this needs.",
    404: "What the path names does not exist.",
    409: "It conflicts with the current state (already exists, already decided, finished).",
    412: "The If-Match etag is stale: read it again.",
    413: "The body, a file or a list is over its limit.",
    415: "The content type or the image format is not one this route takes.",
    422: "A field is invalid (`errors` lists them).",
    429: "Too many requests in progress.",
    503: "Not ready: storage or the model is not available yet (see Retry-After where given).",
    504: "The request waited longer than the service's timeout.",
}
_WRITES = frozenset({"post", "put", "patch", "delete"})


@dataclass(frozen=True)
class Link:
    """After `source` answers `status`, `target` reads what it made, with `parameters` from the answer."""

    source: tuple[str, str]  # (method, path template)
    status: int
    target: tuple[str, str]
    parameters: dict[str, str] = field(default_factory=dict)
    name: str = ""


def _error_response(code: int) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS[code],
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}}


def statuses_for(method: str, operation: dict[str, Any]) -> list[int]:
    """The plumbing's answers an operation can give, from what it has."""
    codes = [400, 422]
    if operation.get("security"):
        codes += [401, 403, 503]
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        codes.append(404)
    if method in _WRITES:
        codes += [409, 412]
    if "requestBody" in operation:
        codes += [413, 415]
    return codes


def document_api(app: FastAPI, *, links: Sequence[Link] = (), extra_statuses: dict[str, Sequence[int]] | None = None,
                 body_models: Sequence[type[BaseModel]] = ()) -> None:
    """Make `app.openapi()` document the shared error answers and `links`. `extra_statuses` adds
    codes by path prefix (e.g. the scoring service's 429/504 on predictions); `body_models` are
    models that hand-written request bodies refer to, whose nested schemas must be components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas[ERROR_SCHEMA] = _ERROR_BODY
        for model in body_models:
            for name, nested in model.model_json_schema(ref_template=REF_TEMPLATE).get("$defs", {}).items():
                schemas.setdefault(name, nested)
        operation_ids: dict[tuple[str, str], str] = {}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                operation_ids[(method, path)] = operation.get("operationId", "")
                responses = operation.setdefault("responses", {})
                codes = statuses_for(method, operation)
                for prefix, added in (extra_statuses or {}).items():
                    if path.startswith(prefix):
                        codes += list(added)
                for code in codes:
                    responses.setdefault(str(code), _error_response(code))
                if "HTTPValidationError" in str(responses.get("422", "")):
                    responses["422"] = _error_response(422)
        for link in links:
            method, path = link.source
            target = operation_ids.get((link.target[0].lower(), link.target[1]))
            source = schema["paths"].get(path, {}).get(method.lower())
            if not target or source is None:
                raise ValueError(f"link {link.name or link.target}: no operation {link.source} or {link.target}")
            response = source["responses"].setdefault(str(link.status), {"description": "Created"})
            response.setdefault("links", {})[link.name or target] = {"operationId": target,
                                                                     "parameters": dict(link.parameters)}
        if "HTTPValidationError" in schemas:  # still referenced by name here and there: give it our shape
            schemas["HTTPValidationError"] = _ERROR_BODY
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the schema
