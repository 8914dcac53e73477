"""What every service's API shares: a page of a listing (and the size a caller may ask for),
the error body, and free-form JSON objects bounded in depth."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from visiondock.limits import bounded_depth, clip_json_depth

# A free-form JSON object a caller sends (metrics, parameters, a prediction): refused (422) when it
# nests deeper than visiondock.limits.MAX_JSON_DEPTH, also where it arrives in a form field.
JsonObject = Annotated[dict[str, Any], AfterValidator(bounded_depth)]
# The same in an answer: what was stored before the limit reads with its deepest part left out.
StoredJsonObject = Annotated[dict[str, Any], BeforeValidator(clip_json_depth)]

Item = TypeVar("Item")
PageSize = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]


class Page(BaseModel, Generic[Item]):
    """One page of a listing; follow `continuation` for the next (the store's token, never an offset)."""

    data: list[Item]
    continuation: str | None = Field(default=None, description="Pass as `continuation` for the next page; null on "
                                                               "the last one.")


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong, for a person to read.")
    code: str = Field(description="The kind of problem, for a program to branch on.")
