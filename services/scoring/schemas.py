"""Response bodies of the scoring API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LabelScore(BaseModel):
    label: str
    probability: float


class PredictResponse(BaseModel):
    model: str
    version: int
    task: str
    predictions: list[LabelScore] = Field(description="Most probable first.")
    timings_ms: dict[str, float] = Field(description="Milliseconds per stage: decode, preprocess, inference.")
