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
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from visiondock.errors import Forbidden, NotAuthenticated

Role = Literal["predict", "label", "train", "admin"]
ROLES: tuple[Role, ...] = ("predict", "label", "train", "admin")
ANY_SCOPE = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Path parameters that name what a request touches: projects in annotation, models elsewhere.
RESOURCE_PARAMS = ("project_id", "model", "name")


class KeyFormatError(ValueError):
    """A key entry that cannot be parsed; the message says which part is wrong."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, its roles and the projects/models it may touch."""

    name: str
    roles: frozenset[str]
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({ANY_SCOPE}))

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


class KeyRing:
    """The keys a service accepts, by SHA-256."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._by_hash = dict(principals)

    @classmethod
    def from_sources(cls, *, plain_keys: Iterable[str] = (), entries: Iterable[str] = (),
                     local_key: str | None = None) -> KeyRing:
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
        return cls(principals)

    def __len__(self) -> int:
        return len(self._by_hash)

    def identify(self, presented: str) -> Principal | None:
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
# In a request's ASGI state: the RoleRequirements the request guard has already checked.
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


class RoleRequirement:
    """What a route needs: a key with one of `roles` (admin has all), whose scope covers the
    project or model the request names. A route declares it once, as a dependency; the
    request guard (`visiondock.limits`) applies it before the body is read.

    `readers` may also read (GET); `resource(app, path_params)` names what the request
    touches when no path parameter does (the model a scoring request resolves to);
    `azure_header` also accepts Azure AI Search's key header.
    """

    def __init__(self, *roles: Role, readers: tuple[Role, ...] = (), azure_header: bool = False,
                 resource: Any = None) -> None:
        self.roles = roles
        self.readers = roles + readers
        self.azure_header = azure_header
        self.resource = resource

    def authorize(self, keyring: KeyRing, method: str, headers: Mapping[str, str], path_params: Mapping[str, Any],
                  app: Any) -> Principal:
        key = presented_key(headers, azure_header=self.azure_header)
        if key is None:
            raise NotAuthenticated(f"missing API key: send it in the {API_KEY_HEADER} header")
        principal = keyring.identify(key)
        if principal is None:
            raise NotAuthenticated("invalid API key")
        roles = self.readers if method in ("GET", "HEAD") else self.roles
        if not principal.has_role(*roles):
            raise Forbidden(f"the key {principal.name!r} lacks the role this needs: {' or '.join(roles)}")
        for param in RESOURCE_PARAMS:
            if isinstance(path_params.get(param), str):
                principal.require_resource(path_params[param])
        named = self.resource(app, path_params) if self.resource is not None else None
        if named:
            principal.require_resource(named)
        return principal


def requirements_of(route: Any) -> list[RoleRequirement]:
    """The RoleRequirements a FastAPI route declares, itself or through its router."""
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    found: list[RoleRequirement] = []
    while stack:
        dep = stack.pop()
        requirement = getattr(getattr(dep, "call", None), "requirement", None)
        if isinstance(requirement, RoleRequirement):
            found.append(requirement)
        stack.extend(dep.dependencies)
    return found
