"""What a scoring process serves: the settings read once into a list of served targets.

A target is one registry model followed at an alias, pinned to a version, or one local
ONNX file. `VISIONDOCK_SCORING_MODEL` (+ `_ALIAS` or `_VERSION`), `_SECONDARY_ALIAS` and
`_MODEL_PATH` are shorthand for entries of the same list that `VISIONDOCK_SCORING_MODELS`
writes out (`flowers,shelf@staging,faces:3`); its `*@ALIAS` entries are not targets but
rules that add one target per registry model carrying the alias (`services/scoring/
follower.py` finds them).

The first target is the default: the model of `/v1/predict`, `/v1/aliases/{alias}/...`
and `GET /v1/model`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DISCOVER = "*"  # in VISIONDOCK_SCORING_MODELS: every registry model that has the alias
_ENTRY = re.compile(r"^(?P<name>\*|[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<alias>[A-Za-z0-9][A-Za-z0-9._-]*)"
                    r"|:(?P<version>[0-9]+))?$")


@dataclass(frozen=True)
class ServedTarget:
    """One model to serve: `name` at `alias`, or pinned to `version`, or the file at `path`.

    A file's `name` may be empty: the model card inside the file names it once loaded.
    """

    name: str
    alias: str | None = None
    version: int | None = None
    path: Path | None = None

    @property
    def answer_alias(self) -> str:
        """What answers say in their `alias` field: the alias, or `v<N>` when pinned."""
        return f"v{self.version}" if self.version else self.alias or ""

    @property
    def key(self) -> str:
        """Unique among a process's targets: `flowers@production`, `tags:1`."""
        return f"{self.name}:{self.version}" if self.version else f"{self.name}@{self.alias}"

    def describe(self) -> str:
        """What `serving` says: `flowers@production`, `tags@1`, or the file's path."""
        if self.path is not None:
            return str(self.path)
        return f"{self.name}@{self.version if self.version else self.alias}"


@dataclass(frozen=True)
class TargetPlan:
    """The targets in order (the first is the default) and the aliases of `*@ALIAS` rules."""

    targets: tuple[ServedTarget, ...] = ()
    discover_aliases: tuple[str, ...] = ()


def parse_model_list(text: str, *, default_alias: str) -> tuple[list[ServedTarget], list[str]]:
    """`flowers,shelf@staging,faces:3,*@production` → (targets, discovered aliases); a ValueError says
    which entry is wrong."""
    targets: list[ServedTarget] = []
    discover: list[str] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(f"VISIONDOCK_SCORING_MODELS entry {entry!r} is not NAME, NAME@ALIAS, NAME:VERSION "
                             "or *@ALIAS")
        version = int(match["version"]) if match["version"] else None
        alias = match["alias"] or default_alias
        if match["name"] == DISCOVER:
            if version is not None:
                raise ValueError("VISIONDOCK_SCORING_MODELS: `*` takes an alias (`*@production`), not a version")
            discover.append(alias)
            continue
        if version == 0:
            raise ValueError(f"VISIONDOCK_SCORING_MODELS entry {entry!r}: versions start at 1")
        if any(t.name == match["name"] for t in targets):
            raise ValueError(f"VISIONDOCK_SCORING_MODELS names {match['name']!r} twice")
        targets.append(ServedTarget(match["name"], None if version else alias, version))
    return targets, discover


def plan_targets(*, model: str, alias: str, version: int | None, secondary_alias: str, models: str,
                 model_path: Path | None) -> TargetPlan:
    """The one reading of the model settings (`ScoringSettings` calls it once, and refuses what it refuses)."""
    if secondary_alias and secondary_alias == alias:
        raise ValueError("VISIONDOCK_SCORING_SECONDARY_ALIAS must differ from VISIONDOCK_SCORING_ALIAS")
    listed, discover = parse_model_list(models, default_alias=alias)
    if listed and model and model != listed[0].name:
        raise ValueError("VISIONDOCK_SCORING_MODEL must be empty or the first model of VISIONDOCK_SCORING_MODELS "
                         f"({listed[0].name!r}): the first model is the default one")
    if model_path is not None:
        if listed or discover:
            raise ValueError("VISIONDOCK_SCORING_MODELS and VISIONDOCK_SCORING_MODEL_PATH exclude each other")
        return TargetPlan((ServedTarget(model, alias, path=model_path),))
    if not listed and model:
        listed = [ServedTarget(model, None if version else alias, version)]
    if listed and secondary_alias:
        # The second alias of the default model, side by side at /v1/aliases/<alias>/...
        listed.insert(1, ServedTarget(listed[0].name, secondary_alias))
    return TargetPlan(tuple(listed), tuple(discover))
