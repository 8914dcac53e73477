"""Request and response bodies of the scoring API. The hot paths build these shapes as plain
dicts; FastAPI checks each answer against its route's model on the way out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from visiondock.schemas import ErrorBody


class LabelScore(BaseModel):
    label: str
    probability: float


class PixelBox(BaseModel):
    """Pixels of the original (upright) image."""

    x1: float
    y1: float
    x2: float
    y2: float


class Region(BaseModel):
    """Fractions of the image's width and height (the annotation service's convention)."""

    left: float
    top: float
    width: float
    height: float


class DetectedObject(BaseModel):
    label: str
    score: float
    box: PixelBox
    region: Region


class FaceBox(BaseModel):
    box: PixelBox
    region: Region


class ImageSize(BaseModel):
    width: int
    height: int


class PredictResponse(BaseModel):
    model: str
    version: int
    alias: str = Field(description="The alias (or `v<N>` when pinned) that chose this version.")
    variant: str = Field(description="fp32, or the variant served (e.g. int8).")
    task: str = Field(description="multiclass, multilabel, detection or face")
    label: str | None = Field(description="The best label (multiclass, face: `unknown` below its threshold), the "
                                          "most probable present tag, or the best detection's label.")
    probability: float | None
    uncertain: bool = Field(description="The best probability is below the model's threshold: can't tell.")
    uncertainty: float = Field(description="0 sure … 1 a coin toss; orders the review queue.")
    predictions: list[LabelScore] | None = Field(default=None, description="Top k labels, most probable first "
                                                                           "(multiclass, multilabel, face).")
    tags: list[LabelScore] | None = Field(default=None, description="Every tag at or above its threshold "
                                                                    "(multilabel).")
    detections: list[DetectedObject] | None = Field(default=None, description="Boxes, best first (detection).")
    face_found: bool | None = Field(default=None, description="Face models: whether a face was found.")
    face: FaceBox | None = None
    image: ImageSize
    batch_size: int = Field(description="Images in the ONNX Runtime run that answered this one.")
    timings_ms: dict[str, float] = Field(description="Milliseconds per stage: decode, preprocess, queue, "
                                                     "inference, postprocess, total.")


class BatchResult(BaseModel):
    name: str
    status: int = Field(description="200, or the 4xx/5xx this image alone would have got.")
    answer: PredictResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    succeeded: int
    failed: int
    results: list[BatchResult] = Field(description="In the order the images were sent.")


class ModelStatus(BaseModel):
    model_config = {"extra": "allow"}

    slot: str = Field(description="The alias it is served at, or `v<N>` when pinned.")
    serving: str
    model: dict[str, Any] | None
    registry_reachable: bool | None
    error: str | None = Field(description="Why the last check or load failed; null when it worked.")


class ServedModelStatus(ModelStatus):
    name: str
    state: str = Field(description="loaded, unloaded (by the memory budget; the next request loads it), "
                                   "loading, missing (the registry has no such alias, model or version yet) "
                                   "or failed")
    ready: bool = Field(description="Loaded, and on a GPU where VISIONDOCK_SCORING_REQUIRE_GPU asks for one.")
    primary: bool = Field(description="Whether it is the default model (of /v1/predict).")
    recently_used_rank: int | None = Field(description="0 = the most recently used")


class ServedModelsStatus(BaseModel):
    primary: str | None = Field(description="The default model (of /v1/predict), when the key may see it.")
    max_loaded_models: int | None = Field(description="VISIONDOCK_SCORING_MAX_LOADED_MODELS; null = no limit")
    loaded: int
    discovering: list[str] = Field(description="`*@alias` entries: models with the alias are added at each poll")
    models: list[ServedModelStatus]


# -- Azure AI Search custom skill -------------------------------------------------------
class SkillRecord(BaseModel):
    recordId: str
    data: dict[str, Any] = Field(description='{"image": {"data": "<base64>"}} (a normalized image), '
                                             '{"image": "<base64>"} or {"imageUrl": "https://..."}')


class SkillRequest(BaseModel):
    values: list[SkillRecord]


class SkillMessage(BaseModel):
    message: str
    statusCode: int | None = None


class SkillRecordResult(BaseModel):
    recordId: str | None
    data: dict[str, Any]
    errors: list[SkillMessage]
    warnings: list[SkillMessage]


class SkillResponse(BaseModel):
    values: list[SkillRecordResult]


# -- Open Inference Protocol v2 ---------------------------------------------------------
class InferTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str = "FP32"
    data: list[Any]


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferTensor]
    outputs: list[dict[str, Any]] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferTensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)
