"""HTTP routes of an alias's audit trail: its history, and rolling it back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from visiondock.schemas import Page
from visiondock.web import require_role

from .aliases import ANONYMOUS_ACTOR, quoted
from .dependencies import AliasPath, Catalog, Model
from .schemas import Alias, AliasChange, AliasRollback, AliasServing
from .serving import MAX_WAIT_SECONDS, ScoringWatch

IfMatch = Annotated[str | None, Header(description="The alias's ETag as last read; the change is refused "
                                                   "with 412 if the alias has changed since.")]

# Reading an alias's history is like reading the alias; rolling it back deploys: admin keys only.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", readers=("predict",)))], tags=["aliases"])


def request_actor(request: Request) -> str:
    """Who is making the request: the API key's name when the deployment names its keys."""
    principal = getattr(request.state, "principal", None)
    name = getattr(principal, "name", None)
    return name if isinstance(name, str) and name else ANONYMOUS_ACTOR


@router.get("/models/{model}/aliases/{alias}/history", response_model=Page[AliasChange],
            summary="Every change of the alias, newest first: who, when, from which version to which, why")
def alias_history(model: Model, alias: AliasPath, catalog: Catalog, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  continuation: str | None = None) -> dict:
    items, token = catalog.alias_history(model, alias, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.post("/models/{model}/aliases/{alias}/rollback", response_model=Alias,
             summary="Move the alias back to the version it pointed at before its last move",
             dependencies=[Depends(require_role("admin"))])
def rollback_alias(model: Model, alias: AliasPath, catalog: Catalog, request: Request, response: Response,
                   body: AliasRollback | None = None, if_match: IfMatch = None) -> dict:
    moved = catalog.rollback_alias(model, alias, actor=request_actor(request),
                                    reason=body.reason if body else "", if_match=if_match)
    response.headers["ETag"] = quoted(moved["etag"])
    return moved


# Asking the scoring service to check its aliases now uses the registry's own key: train keys only.
@router.get("/models/{model}/aliases/{alias}/serving", response_model=AliasServing,
            summary="Whether the scoring service serves the alias's version yet, and since when. With `wait`, it "
                    "is first asked to check its aliases now, and the answer waits up to `wait` seconds for the "
                    "version to serve (after a promotion)",
            dependencies=[Depends(require_role("train"))])
def alias_serving(model: Model, alias: AliasPath, catalog: Catalog, request: Request,
                  wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0.0) -> dict:
    version = int(catalog.get_alias(model, alias)["version"])
    watch: ScoringWatch = request.app.state.scoring_watch
    return watch.serving(model, alias, version, wait=wait)
