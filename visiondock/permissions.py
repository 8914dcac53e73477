"""The permission table: who may call each route of a service, and what the key's scope must cover.

Every route declares one `RoleRequirement` (visiondock.auth): its own, else its router's. The app
factory (visiondock.web) reads the declarations of every route into this table and refuses to start
a service with a route that declares nothing (unless its path is one of the open paths: the probes,
the API docs and the static pages a service lists), or that says it is scoped by its path when its
path names no project or model. The request guard and the routes' key checks then apply the
declarations; docs/security.md shows the table as `python -m cli.permissions` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from visiondock.auth import MODEL_PARAMS, PROJECT_PARAMS, ROLES, RoleRequirement, declared_requirement

# Open on every service: the probes and the API docs (pages and their assets).
SHARED_OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                     "/docs-assets")
_SKIPPED_METHODS = frozenset({"HEAD", "OPTIONS"})


class UndeclaredRouteError(RuntimeError):
    """Routes without a permission declaration (or with one that cannot hold); the message lists them."""


@dataclass(frozen=True)
class Permission:
    """One route and method: the roles that may call it and what a scoped key must cover (None: open)."""

    method: str
    path: str
    requirement: RoleRequirement | None

    @property
    def open(self) -> bool:
        return self.requirement is None

    def roles(self) -> tuple[str, ...]:
        """The roles that may call it (admin may call everything); empty when it is open."""
        if self.requirement is None:
            return ()
        return tuple(role for role in ROLES if role == "admin" or role in self.requirement.roles_for(self.method))

    def who(self) -> str:
        if self.requirement is None:
            return "open (no key)"
        roles = self.roles()
        return "any key" if len(roles) == len(ROLES) else ", ".join(roles)

    def scope(self) -> str:
        return "—" if self.requirement is None else self.requirement.scope.describe(self.path)


def _names_a_resource(path: str) -> bool:
    return any("{" + param + "}" in path or "{" + param + ":" in path for param in (*PROJECT_PARAMS, *MODEL_PARAMS))


def permissions(app: Any, open_paths: Iterable[str] = ()) -> list[Permission]:
    """Every route and method of `app` with its declaration; UndeclaredRouteError when one has none
    (outside `open_paths` and SHARED_OPEN_PATHS) or declares a scope its path cannot give."""
    opened = {*SHARED_OPEN_PATHS, *open_paths}
    found: list[Permission] = []
    problems: list[str] = []
    for context in iter_route_contexts(app.routes):
        path = context.path
        if path is None:  # e.g. a Host route: nothing this table can name
            problems.append(f"{context.route!r}: a route without a path")
            continue
        if isinstance(context.original_route, Mount) or context.methods is None:
            if path not in opened:
                problems.append(f"{path} (mounted): not an open path")
            else:
                found.append(Permission("*", path, None))
            continue
        requirement = declared_requirement(context)
        if requirement is None and path not in opened:
            problems.append(f"{','.join(sorted(context.methods))} {path}: declares no role and scope "
                            "(require_role(...) on the route or its router)")
            continue
        if requirement is not None and requirement.scope.path and requirement.scope.served is None \
                and not _names_a_resource(path):
            problems.append(f"{','.join(sorted(context.methods))} {path}: scoped by its path, but the path names "
                            "no project or model: declare what it touches (scope=...)")
            continue
        found += [Permission(method, path, requirement) for method in sorted(context.methods)
                  if method not in _SKIPPED_METHODS]
    if problems:
        raise UndeclaredRouteError("routes without a permission that can hold; the service does not start:\n  "
                                   + "\n  ".join(problems))
    return found


def service_permissions(app: Any) -> list[Permission]:
    """The table of an app the factory built, with every route added since (`permissions`)."""
    return permissions(app, getattr(app.state, "open_paths", ()))


def markdown(tables: Sequence[tuple[str, Sequence[Permission]]]) -> str:
    """The tables of several services as one Markdown table, sorted by service, path and method."""
    lines = ["| service | method | path | roles | scope: the key must cover |", "|---|---|---|---|---|"]
    for service, rows in tables:
        for row in sorted(rows, key=lambda r: (r.path, r.method)):
            path = row.path.replace("|", "\\|")
            lines.append(f"| {service} | {row.method} | `{path}` | {row.who()} | {row.scope()} |")
    return "\n".join(lines) + "\n"
