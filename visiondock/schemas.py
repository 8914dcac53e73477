"""Response bodies every service shares: a page of a listing, and the error body."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a listing; follow `continuation` for the next (the store's token, never an offset)."""

    data: list[Item]
    continuation: str | None = Field(default=None, description="Pass as `continuation` for the next page; null on "
                                                               "the last one.")


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong, for a person to read.")
    code: str = Field(description="The kind of problem, for a program to branch on.")
