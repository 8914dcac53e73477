"""The drawing style of boxes and labels, for pages that draw them as `/v1/render` does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from visiondock.drawing import STYLE
from visiondock.web import require_api_key

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["drawing"])


@router.get("/drawing-style", summary="Colours, line widths and label placement of drawn boxes (visiondock.drawing)")
def drawing_style() -> dict[str, Any]:
    return STYLE
