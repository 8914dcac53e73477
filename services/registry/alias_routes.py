"""HTTP routes of aliases: pointing one at a version (deploying it), resolving it, its history and
rolling it back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from visiondock.schemas import Page
from visiondock.web import IfMatch, caller_name, require_role

from .aliases import quoted
from .dependencies import DEPLOYS, AliasPath, Catalog, Model
from .schemas import Alias, AliasChange, AliasList, AliasRollback, AliasServing, AliasUpdate, ResolvedAlias
from .serving import MAX_WAIT_SECONDS, ScoringWatch

# Reading an alias (and its history) is like reading the model; moving or rolling it back deploys: admin keys only.
router = APIRouter(prefix="/v1", dependencies=[Depends(require_role("train", readers=("predict",)))], tags=["aliases"])


@router.get("/models/{model}/aliases", response_model=AliasList)
def list_aliases(model: Model, catalog: Catalog) -> dict:
    return {"data": catalog.list_aliases(model)}


@router.put("/models/{model}/aliases/{alias}", response_model=Alias,
            summary="Point an alias at a version (deploys it to whatever serves the alias); recorded in its "
                    "history. With If-Match (the alias's ETag) a move refuses to overwrite a newer one: 412.",
            dependencies=DEPLOYS)
def set_alias(model: Model, alias: AliasPath, body: AliasUpdate, catalog: Catalog, request: Request,
              response: Response, if_match: IfMatch = None) -> dict:
    moved = catalog.set_alias(model, alias, body.version, actor=caller_name(request), reason=body.reason,
                               if_match=if_match)
    response.headers["ETag"] = quoted(moved["etag"])
    return moved


@router.get("/models/{model}/aliases/{alias}", response_model=ResolvedAlias,
            summary="The version an alias points at, with its metadata and artifact",
            responses={304: {"description": "The alias has not changed since the ETag sent in If-None-Match."}})
def resolve_alias(model: Model, alias: AliasPath, catalog: Catalog, request: Request,
                  response: Response) -> dict | Response:
    # Watchers poll this: an unchanged alias costs one small read and an empty 304.
    seen = request.headers.get("if-none-match")
    if seen and seen == quoted(catalog.get_alias(model, alias)["etag"]):
        return Response(status_code=304, headers={"ETag": seen})
    resolved = catalog.resolve_alias(model, alias)
    response.headers["ETag"] = quoted(resolved["etag"])
    return resolved


@router.delete("/models/{model}/aliases/{alias}", status_code=204, dependencies=DEPLOYS)
def delete_alias(model: Model, alias: AliasPath, catalog: Catalog, request: Request,
                 if_match: IfMatch = None, reason: Annotated[str, Query(max_length=500)] = "") -> None:
    catalog.delete_alias(model, alias, actor=caller_name(request), reason=reason, if_match=if_match)


@router.get("/models/{model}/aliases/{alias}/history", response_model=Page[AliasChange],
            summary="Every change of the alias, newest first: who, when, from which version to which, why")
def alias_history(model: Model, alias: AliasPath, catalog: Catalog, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  continuation: str | None = None) -> dict:
    items, token = catalog.alias_history(model, alias, limit=limit, continuation=continuation)
    return {"data": items, "continuation": token}


@router.post("/models/{model}/aliases/{alias}/rollback", response_model=Alias,
             summary="Move the alias back to the version it pointed at before its last move",
             dependencies=DEPLOYS)
def rollback_alias(model: Model, alias: AliasPath, catalog: Catalog, request: Request, response: Response,
                   body: AliasRollback | None = None, if_match: IfMatch = None) -> dict:
    moved = catalog.rollback_alias(model, alias, actor=caller_name(request),
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
