"""API keys with names, roles and scopes.

A key is a random secret; the services store only its SHA-256, in an entry

    name:role[,role]:scope[,scope]:sha256hex        e.g. search-skill:predict:flowers:9f86d0…

where the roles are `predict` (score images, read the registry), `label` (projects, images,
labels, the review queue), `train` (read labeled images, register versions, report runs)
and `admin` (everything, aliases included), and the scope is `*` or the project and
model names the key may touch. Entries come from `VISIONDOCK_API_KEY_ENTRIES` (separated
by `;` or new lines) and from the file `VISIONDOCK_API_KEYS_FILE` (one per line, `#`
comments), so a Kubernetes Secret can carry them as a variable or a mounted file.
Plain keys in `VISIONDOCK_API_KEYS` remain admin keys for local use.

A request's key becomes a `Principal` on `request.state.principal`; its name goes to the
access log and to whatever a request records (label history, audit).

Run keys: the registry gives each trainer it launches a key of its own (`RunKeys.issue`): role
`train`, scoped to the run's project and model, good for that one run and only until the run's
deadline. It is signed (HMAC-SHA256) with the secret VISIONDOCK_RUN_KEY_SECRET that the registry
and the annotation service share, so they accept it without storing it; its principal is named
after the run (`run-…`). A trainer never holds a key with more power than that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from visiondock.errors import Forbidden, InvalidContent, NotAuthenticated

Role = Literal["predict", "label", "train", "admin"]
ROLES: tuple[Role, ...] = ("predict", "label", "train", "admin")
ANY_SCOPE = "*"
# Who made a request, in the label and alias histories, when the deployment does not name its keys.
ANONYMOUS_CALLER = "api-key"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class KeyFormatError(ValueError):
    """A key entry that cannot be parsed; the message says which part is wrong."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, its roles and the projects/models it may touch."""

    name: str
    roles: frozenset[str]
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({ANY_SCOPE}))
    # A run key's run: the one training run it may report on (None: any run its scope covers).
    run_id: str | None = None

    @property
    def unscoped(self) -> bool:
        return ANY_SCOPE in self.scopes

    def has_role(self, *wanted: str) -> bool:
        return "admin" in self.roles or any(role in self.roles for role in wanted)

    def allows(self, resource: str) -> bool:
        return self.unscoped or resource in self.scopes

    def require_resource(self, resource: str) -> None:
        """Forbidden unless the key's scope covers this project or model."""
        if not self.allows(resource):
            raise Forbidden(f"the key {self.name!r} is not allowed to use {resource!r}")

    def require_run(self, run_id: str) -> None:
        """Forbidden when this is another run's key."""
        if self.run_id is not None and self.run_id != run_id:
            raise Forbidden(f"the key {self.name!r} belongs to training run {self.run_id}, not {run_id}")

    def require_unscoped(self, what: str) -> None:
        if not self.unscoped:
            raise Forbidden(f"the key {self.name!r} is limited to {', '.join(sorted(self.scopes))}; {what} needs "
                            "a key without a scope")


def hash_key(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash does not make guessing any easier.
    return hashlib.sha256(key.encode()).hexdigest()


def parse_entry(entry: str) -> tuple[str, Principal]:
    """`name:roles:scopes:sha256` → (sha256, Principal)."""
    parts = entry.strip().split(":")
    if len(parts) != 4:
        raise KeyFormatError(f"a key entry is name:role[,role]:scope[,scope]:sha256; got {len(parts)} parts "
                             f"in an entry starting {entry.strip()[:12]!r}")
    name, roles_text, scopes_text, digest = (p.strip() for p in parts)
    if not _NAME.match(name):
        raise KeyFormatError(f"key name {name!r}: letters, digits, '.', '_' and '-', at most 64")
    roles = frozenset(r.strip() for r in roles_text.split(",") if r.strip())
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise KeyFormatError(f"key {name!r}: roles must be some of {', '.join(ROLES)}; got {roles_text!r}")
    scopes = frozenset(s.strip() for s in scopes_text.split(",") if s.strip())
    if not scopes:
        raise KeyFormatError(f"key {name!r}: the scope is '*' or project/model names")
    digest = digest.lower()
    if not _SHA256.match(digest):
        raise KeyFormatError(f"key {name!r}: the last part must be the key's SHA-256 in hex (64 digits)")
    return digest, Principal(name, roles, scopes)


def split_entries(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for chunk in text.split(";") for line in chunk.splitlines())
    return [line for line in lines if line]


RUN_KEY_PREFIX = "vdr1_"
_RUN_KEY_CONTEXT = b"visiondock run key v1\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RunKeys:
    """Issues and reads run keys: `vdr1_<claims>.<HMAC-SHA256 of the claims>` (see the module docstring)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, _RUN_KEY_CONTEXT + payload.encode(), hashlib.sha256).digest())

    def issue(self, *, run_id: str, project: str, model: str, expires_at: float) -> str:
        claims = {"run": run_id, "project": project, "model": model, "exp": int(expires_at)}
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{RUN_KEY_PREFIX}{payload}.{self._signature(payload)}"

    def identify(self, presented: str, *, now: float | None = None) -> Principal | None:
        """The run's principal, or None for a key not signed with this secret, malformed or expired."""
        payload, _, signature = presented.removeprefix(RUN_KEY_PREFIX).partition(".")
        if not hmac.compare_digest(signature.encode(), self._signature(payload).encode()):
            return None
        try:
            claims = json.loads(_unb64(payload))
            run_id, scopes, expires = claims["run"], {claims["project"], claims["model"]}, float(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if expires <= (time.time() if now is None else now) or not all(isinstance(v, str) for v in (run_id, *scopes)):
            return None
        return Principal(run_id, frozenset({"train"}), frozenset(scopes), run_id=run_id)


class KeyRing:
    """The keys a service accepts: entries by SHA-256, and run keys when it knows their secret."""

    def __init__(self, principals: Mapping[str, Principal], *, run_keys: RunKeys | None = None) -> None:
        self._by_hash = dict(principals)
        self.run_keys = run_keys

    @classmethod
    def from_sources(cls, *, plain_keys: Iterable[str] = (), entries: Iterable[str] = (),
                     local_key: str | None = None, run_keys: RunKeys | None = None) -> KeyRing:
        principals: dict[str, Principal] = {}
        for key in plain_keys:
            # Plain keys predate roles: they stay admin, named by a prefix of their hash for the logs.
            name = "local-dev" if key == local_key else f"key-{hash_key(key)[:8]}"
            principals[hash_key(key)] = Principal(name, frozenset({"admin"}))
        names: set[str] = set()
        for entry in entries:
            digest, principal = parse_entry(entry)
            if principal.name in names:
                raise KeyFormatError(f"two key entries are named {principal.name!r}")
            names.add(principal.name)
            principals[digest] = principal
        return cls(principals, run_keys=run_keys)

    def __len__(self) -> int:
        return len(self._by_hash)

    def identify(self, presented: str) -> Principal | None:
        if presented.startswith(RUN_KEY_PREFIX):
            return self.run_keys.identify(presented) if self.run_keys is not None else None
        return self._by_hash.get(hash_key(presented))


def new_key(name: str, roles: Iterable[str], scopes: Iterable[str] = (ANY_SCOPE,)) -> tuple[str, str]:
    """A fresh random key and the entry a service stores for it: (key, entry)."""
    key = "vdk_" + secrets.token_urlsafe(32)
    entry = f"{name}:{','.join(sorted(set(roles)))}:{','.join(sorted(set(scopes))) or ANY_SCOPE}:{hash_key(key)}"
    parse_entry(entry)  # the same checks a service applies when it reads the entry
    return key, entry


def read_entries_file(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        return split_entries(path.read_text())
    except OSError as exc:
        raise KeyFormatError(f"cannot read the key file {path}: {exc.strerror}") from None


def principal_of(state: Any) -> Principal | None:
    """The principal a request carries (set by the key check), or None before it."""
    return getattr(state, "principal", None)


# -- the per-route requirement ---------------------------------------------------------
API_KEY_HEADER = "X-API-Key"
# In a request's ASGI state: the RoleRequirement the request guard has already checked.
AUTHORIZED = "visiondock.authorized"
# Azure AI Search sends its key in this header to custom skills; accepted on skill routes only.
AZURE_KEY_HEADER = "Ocp-Apim-Subscription-Key"


def presented_key(headers: Mapping[str, str], *, azure_header: bool) -> str | None:
    key = headers.get(API_KEY_HEADER.lower()) or headers.get(API_KEY_HEADER)
    if not key:
        authorization = headers.get("authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else None
    if not key and azure_header:
        key = headers.get(AZURE_KEY_HEADER.lower()) or headers.get(AZURE_KEY_HEADER)
    return key or None


# Where a request names the projects and models it touches (what a key's scope must cover).
PROJECT_PARAMS = ("project_id",)
MODEL_PARAMS = ("model", "name")
# Finds, after the body is read, what a request touches through a stored object (a run's model and project).
Lookup = Callable[[Any, Principal], Awaitable[Iterable[str]]]


@dataclass(frozen=True)
class ResourceScope:
    """What a route touches, which a scoped key must cover; one per route, beside its roles.

    - `path`: the path's project (`project_id`) or model (`model`, `name`);
    - `query`: query parameters naming a project or model (`GET /v1/runs?model=`);
    - `body`: fields of the JSON body naming one, or `field.key` inside a form field holding JSON;
    - `lookup`: what a stored object the request addresses belongs to (a run's model and project);
    - `served`: what the service itself serves (the scoring service's model), read from the app;
    - `unnamed`: when the request names nothing, `everything` (listing all of them: an unscoped key
      only) or `nothing` (the route touches no project or model);
    - `delegated`: another service judges the request with the key passed on (the app's registry proxy).

    The path, query and served parts are checked before the body is read; the body and lookup
    parts once it is (`RoleRequirement.check_after_body`).
    """

    path: bool = False
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    lookup: Lookup | None = None
    lookup_names: str = ""
    served: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    unnamed: Literal["everything", "nothing"] = "nothing"
    delegated: str = ""

    @property
    def after_body(self) -> bool:
        return bool(self.body or self.lookup)

    def describe(self, path_template: str = "") -> str:
        """In words, for the permission table: `project`, `model`, `body: model, project_id`, ..."""
        parts = []
        if self.path:
            parts += [word for word, params in (("project", PROJECT_PARAMS), ("model", MODEL_PARAMS))
                      if any("{" + p + "}" in path_template or "{" + p + ":" in path_template for p in params)]
        parts += [f"query `{name}`" for name in self.query]
        parts += [f"body `{name}`" for name in self.body]
        if self.lookup is not None:
            parts.append(self.lookup_names or "a stored object")
        if self.served is not None:
            parts.append("the served model")
        if self.delegated:
            return f"as {self.delegated} decides"
        if self.unnamed == "everything":
            parts.append("else everything (unscoped key)" if parts else "everything (unscoped key)")
        return ", ".join(parts) or "nothing"

    def before_body(self, path_params: Mapping[str, Any], query: Mapping[str, Any] | None, app: Any) -> list[str]:
        """The projects and models named by the path, the query and the service itself."""
        named: list[str] = []
        if self.path:
            named += [path_params[p] for p in (*PROJECT_PARAMS, *MODEL_PARAMS) if isinstance(path_params.get(p), str)]
        for name in self.query:
            value = (query or {}).get(name)
            if isinstance(value, str) and value:
                named.append(value)
        if self.served is not None:
            served = self.served(app, path_params)
            if served:
                named.append(served)
        return named


UNNAMED = "a request that names no project or model (it reaches all of them)"
# The common scopes: by the path's project or model; listing everything; touching none.
BY_PATH = ResourceScope(path=True)
EVERYTHING = ResourceScope(unnamed="everything")
NOTHING = ResourceScope()


def by_body(*fields: str) -> ResourceScope:
    return ResourceScope(body=fields)


def by_lookup(lookup: Lookup, names: str) -> ResourceScope:
    return ResourceScope(lookup=lookup, lookup_names=names)


class RoleRequirement:
    """What a route needs: a key with one of `roles` (admin has all), whose scope covers what the
    request touches (`scope`). A route declares it once, as a dependency (its own, else its
    router's); the app factory refuses to start a route without one, and the request guard
    (`visiondock.limits`) applies it before the body is read.

    `readers` may also read (GET); `resource(app, path_params)` names what the request touches when no
    path parameter does (the model a scoring request resolves to, added to the scope as `served`);
    `azure_header` also accepts Azure AI Search's key header.
    """

    def __init__(self, *roles: Role, readers: tuple[Role, ...] = (), azure_header: bool = False,
                 resource: Any = None, scope: ResourceScope = BY_PATH) -> None:
        self.roles = roles
        self.readers = roles + readers
        self.azure_header = azure_header
        self.resource = resource
        self.scope = ResourceScope(**{**scope.__dict__, "served": resource}) if resource is not None else scope

    def roles_for(self, method: str) -> tuple[Role, ...]:
        return self.readers if method in ("GET", "HEAD") else self.roles

    def authorize(self, keyring: KeyRing, method: str, headers: Mapping[str, str], path_params: Mapping[str, Any],
                  app: Any, query: Mapping[str, Any] | None = None) -> Principal:
        """The caller, when its key has the role and its scope covers what the path, the query and the
        service name; the body's part comes later (`check_after_body`)."""
        key = presented_key(headers, azure_header=self.azure_header)
        if key is None:
            raise NotAuthenticated(f"missing API key: send it in the {API_KEY_HEADER} header")
        principal = keyring.identify(key)
        if principal is None:
            raise NotAuthenticated("invalid API key")
        roles = self.roles_for(method)
        if not principal.has_role(*roles):
            raise Forbidden(f"the key {principal.name!r} lacks the role this needs: {' or '.join(roles)}")
        named = self.scope.before_body(path_params, query, app)
        for resource in named:
            principal.require_resource(resource)
        if not named and not self.scope.after_body and self.scope.unnamed == "everything":
            principal.require_unscoped(UNNAMED)
        return principal

    async def check_after_body(self, request: Any, principal: Principal) -> None:
        """The scope's body and lookup parts, once FastAPI has read the body."""
        scope = self.scope
        if not scope.after_body:
            return
        named = scope.before_body(request.path_params, request.query_params, request.app)
        if scope.body:
            named += await _body_values(request, scope.body)
        if scope.lookup is not None:
            named += list(await scope.lookup(request, principal))
        for resource in named:
            principal.require_resource(resource)
        if not named and scope.unnamed == "everything":
            principal.require_unscoped(UNNAMED)


async def _body_values(request: Any, fields: tuple[str, ...]) -> list[str]:
    """The strings at `fields` of the request's JSON body (FastAPI has parsed and kept it), or at
    `field.key` of a form field holding JSON."""
    found: list[str] = []
    for name in fields:
        field_name, _, key = name.partition(".")
        if key:
            form = await request.form()  # parsed already by FastAPI: this is its kept copy
            text = form.get(field_name)
            try:
                value = json.loads(text) if isinstance(text, str) else None
            except (ValueError, RecursionError):
                value = None  # FastAPI answers the malformed field with 422
            value = value.get(key) if isinstance(value, dict) else None
        else:
            try:
                body = await request.json()  # parsed already by FastAPI: this is its kept copy
            except ValueError:
                raise InvalidContent("the body is not a JSON object") from None
            value = body.get(field_name) if isinstance(body, dict) else None
        if isinstance(value, str) and value:
            found.append(value)
    return found


def declared_requirement(route: Any) -> RoleRequirement | None:
    """The RoleRequirement that governs a route: its own, else its router's (the last one declared)."""
    dependant = getattr(route, "dependant", None)
    found = None
    for dep in dependant.dependencies if dependant is not None else ():
        requirement = getattr(getattr(dep, "call", None), "requirement", None)
        if isinstance(requirement, RoleRequirement):
            found = requirement
    return found
