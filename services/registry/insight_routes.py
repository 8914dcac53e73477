"""HTTP routes that explain versions to a person: lineage, comparisons and production behaviour."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from visiondock.web import require_api_key

from .compare import compare_versions
from .dependencies import Catalog, Model
from .lineage_view import lineage_of
from .production import production_report

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["versions"])


@router.get("/models/{model}/versions/{version}/lineage",
            summary="What the version learned from (dataset snapshot with label revisions and content hash), "
                    "its parameters, code version and parent version, and how its data differs from the parent's")
def version_lineage(model: Model, version: int, catalog: Catalog) -> dict:
    return lineage_of(catalog, model, version)


@router.get("/models/{model}/compare",
            summary="Two versions side by side: headline and per-class metrics, with `b - a` and whether `b` "
                    "is better or worse")
def compare(model: Model, catalog: Catalog, a: Annotated[int, Query(ge=1, description="The reference.")],
            b: Annotated[int, Query(ge=1, description="The candidate.")]) -> dict:
    return compare_versions(catalog.get_version(model, a), catalog.get_version(model, b))


@router.get("/models/{model}/production",
            summary="Captured production predictions per label and time window, and drift (PSI of confidence "
                    "and of the label mix) of each version against its test-set baseline, flagged above the "
                    "threshold (VISIONDOCK_DRIFT_PSI_THRESHOLD)")
def production(model: Model, catalog: Catalog, request: Request,
               window_minutes: Annotated[int, Query(ge=1, le=7 * 24 * 60)] = 60,
               windows: Annotated[int, Query(ge=1, le=500)] = 24) -> dict:
    return production_report(catalog, model, window_minutes=window_minutes, windows=windows,
                             threshold=request.app.state.settings.drift_psi_threshold)
