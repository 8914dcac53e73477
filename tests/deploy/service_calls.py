"""Every network call a VisionDock workload makes, read from its code (Python's own parser, no import).

A call to another service is a client built from a service URL setting: a call whose argument is
`<something>.annotation_url`, `.registry_url` or `.scoring_url` (alone, or in `a or b` / `a if c else b`:
`AnnotationClient(args.annotation_url or settings.annotation_url, key)`, `httpx.AsyncClient(
base_url=settings.registry_url)`); a URL inside a message (an f-string) or a dict is no call. A call to the
Kubernetes API is a call of anything `services.registry.kubernetes_jobs` defines. A call to storage is a
read of `stores.documents` / `stores.blobs` or a call of `open_document_store` / `open_blob_store`.

Each call keeps the conditions it runs under: the tests of the `if` statements and `x if c else y`
expressions around it, and the `if c: return` statements before it in its function. A condition on
settings (`settings.scoring_capture_rate > 0`, `not kubernetes.trainer_cronjob`) is evaluated later
against the environment a chart profile gives the workload; any other condition is taken as possible.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("annotation", "registry", "scoring")
KUBERNETES_API = "kubernetes-api"
STORAGE = "storage"
_URL_SETTINGS = {f"{service}_url": service for service in SERVICES}
_STORAGE_OPENERS = frozenset({"open_document_store", "open_blob_store"})
_KUBERNETES_MODULE = "services.registry.kubernetes_jobs"

# Each workload the chart runs, and the code it runs (a package, a module, or one function of a module).
WORKLOAD_CODE: dict[str, tuple[str, str | None]] = {
    "annotation": ("services/annotation", None),
    "registry": ("services/registry", None),
    "scoring": ("services/scoring", None),
    "trainer": ("services/trainer", None),
    "provision": ("visiondock/storage/provision.py", None),
    "purge-captures": ("cli/main.py", "cmd_purge_captures"),
}
# The command that runs that code (the chart's containers are held to it).
WORKLOAD_COMMANDS: dict[str, list[str]] = {
    "annotation": ["python", "-m", "services.annotation"],
    "registry": ["python", "-m", "services.registry"],
    "scoring": ["python", "-m", "services.scoring"],
    "trainer": ["python", "-m", "services.trainer"],
    "provision": ["python", "-m", "visiondock.storage.provision"],
    "purge-captures": ["visiondock", "purge-captures"],
}


@dataclass(frozen=True)
class Guard:
    test: ast.expr
    holds: bool  # the call runs when `test` is true (or, for else branches and early returns, false)

    def __str__(self) -> str:
        return ("" if self.holds else "not ") + ast.unparse(self.test)


@dataclass(frozen=True)
class Call:
    caller: str                      # the workload
    callee: str                      # a service, KUBERNETES_API or STORAGE
    where: str                       # file:line
    guards: tuple[Guard, ...] = field(default=())

    def __str__(self) -> str:
        when = f" when {' and '.join(map(str, self.guards))}" if self.guards else ""
        return f"{self.caller} -> {self.callee} ({self.where}{when})"


def _url_settings(node: ast.expr) -> Iterator[str]:
    """The service URL settings an argument expression is made of (a plain read, `or`, `if else`)."""
    if isinstance(node, ast.Attribute) and node.attr in _URL_SETTINGS:
        yield _URL_SETTINGS[node.attr]
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from _url_settings(value)
    elif isinstance(node, ast.IfExp):
        yield from _url_settings(node.body)
        yield from _url_settings(node.orelse)


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


class _Finder(ast.NodeVisitor):
    def __init__(self, caller: str, path: Path, kubernetes_names: set[str]) -> None:
        self.caller, self.path, self.kubernetes_names = caller, path, kubernetes_names
        self.guards: list[Guard] = []
        self.calls: list[Call] = []

    def _add(self, callee: str, node: ast.AST) -> None:
        where = f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        self.calls.append(Call(self.caller, callee, where, tuple(self.guards)))

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._branch(node.test, True, node.body)
        self._branch(node.test, False, node.orelse)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self._branch(node.test, True, [node.body])
        self._branch(node.test, False, [node.orelse])

    def _branch(self, test: ast.expr, holds: bool, nodes: list[Any]) -> None:
        self.guards.append(Guard(test, holds))
        self._body(nodes)
        self.guards.pop()

    def _body(self, nodes: list[Any]) -> None:
        # `if c: return` before a statement: that statement runs only when c is false.
        returned: list[Guard] = []
        for node in nodes:
            self.visit(node)
            if isinstance(node, ast.If) and node.body and isinstance(node.body[-1], ast.Return | ast.Raise) \
                    and not node.orelse:
                returned.append(Guard(node.test, False))
                self.guards.append(returned[-1])
        for _ in returned:
            self.guards.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        saved, self.guards = self.guards, []  # a function's calls run under its own guards, wherever it is called
        self._body(node.body)
        self.guards = saved

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item)
        self._body(node.body)

    visit_AsyncWith = visit_With  # type: ignore[assignment]

    def visit_Try(self, node: ast.Try) -> None:
        self._body(node.body)
        for handler in node.handlers:
            self._body(handler.body)
        self._body(node.orelse)
        self._body(node.finalbody)

    def visit_Call(self, node: ast.Call) -> None:
        for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
            for service in _url_settings(argument):
                self._add(service, node)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name in _STORAGE_OPENERS:
            self._add(STORAGE, node)
        if _root_name(node.func) in self.kubernetes_names:
            self._add(KUBERNETES_API, node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ("documents", "blobs") and _root_name(node) == "stores":
            self._add(STORAGE, node)
        self.generic_visit(node)


def _imported_module(node: ast.ImportFrom, path: Path) -> str:
    """The absolute name of the module `node` imports from (`from .x import y` resolved against `path`)."""
    if not node.level:
        return node.module or ""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    package = package[:len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _kubernetes_names(tree: ast.Module, path: Path) -> set[str]:
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and _imported_module(node, path) == _KUBERNETES_MODULE
            for alias in node.names}


def _sources(location: str) -> list[Path]:
    path = ROOT / location
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def calls_of(workload: str) -> list[Call]:
    location, function = WORKLOAD_CODE[workload]
    found: list[Call] = []
    for path in _sources(location):
        tree = ast.parse(path.read_text(), str(path))
        finder = _Finder(workload, path, _kubernetes_names(tree, path))
        if function is None:
            finder.visit(tree)
        else:
            finder.visit(next(node for node in tree.body
                              if isinstance(node, ast.FunctionDef) and node.name == function))
        found += finder.calls
    return found


def all_calls() -> list[Call]:
    return [call for workload in WORKLOAD_CODE for call in calls_of(workload)]


# -- evaluating guards against a workload's environment -------------------------------------------------
def _settings_classes() -> list[type]:
    from services.scoring.settings import ScoringSettings
    from visiondock.job_contract import KubernetesSettings

    return [ScoringSettings, KubernetesSettings]  # ScoringSettings: every shared setting and scoring's own


def setting_value(name: str, environment: Mapping[str, str]) -> tuple[bool, Any]:
    """(found, value) of a setting field by name, as the process would read it from `environment`."""
    for cls in _settings_classes():
        spec = cls.model_fields.get(name)
        if spec is None:
            continue
        variable = (cls.model_config.get("env_prefix", "") + name).upper()
        if variable in environment:
            return True, TypeAdapter(spec.annotation).validate_python(environment[variable])
        return True, spec.get_default(call_default_factory=True)
    return False, None


class _Settings(ast.NodeTransformer):
    def __init__(self, environment: Mapping[str, str]) -> None:
        self.environment, self.values, self.unknown = environment, {}, False

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        found, value = setting_value(node.attr, self.environment)
        if not found:
            self.unknown = True
            return node
        name = f"_setting_{len(self.values)}"
        self.values[name] = value
        return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if not node.id.startswith("_setting_"):
            self.unknown = True
        return node


def guard_holds(guard: Guard, environment: Mapping[str, str]) -> bool:
    """Whether the guard lets the call happen with these settings; True when it is not about settings."""
    transformer = _Settings(environment)
    expression = transformer.visit(ast.Expression(body=ast.parse(ast.unparse(guard.test), mode="eval").body))
    if transformer.unknown:
        return True
    value = eval(compile(ast.fix_missing_locations(expression), "<guard>", "eval"), {"__builtins__": {}},
                 transformer.values)
    return bool(value) is guard.holds


def happens(call: Call, environment: Mapping[str, str]) -> bool:
    return all(guard_holds(guard, environment) for guard in call.guards)
