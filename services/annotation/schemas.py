"""Request and response bodies of the annotation API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, Field, StringConstraints, model_validator

from visiondock.schemas import JsonObject, StoredJsonObject
from visiondock.vocabulary import ProjectType

Split = Literal["train", "test"]

# Lowercase DNS-label style: project ids appear in URLs, blob keys and model names.
ProjectId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
# Path parameters are checked here, at the edge, before any reaches the stores (whose own
# checks would be a 400 about document ids rather than about the request).
ProjectPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="The project's id.")]
ImagePath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The image's id: the SHA-256 of its bytes.")]
ItemPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$",
                               description="The review item's id (the capture id).")]
TagPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[\w][\w .+-]*$", description="The tag's name.")]
TagName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w][\w .+-]*$")
]


class ProjectCreate(BaseModel):
    id: ProjectId = Field(description="Lowercase letters, digits and '-', e.g. `shelf-products`; also the "
                                      "default name of the models trained from it.")
    type: ProjectType
    description: str = Field(default="", max_length=2000)
    tags: list[TagName] = Field(default_factory=list, description="Tags to create with the project.")


class Project(BaseModel):
    id: str
    type: ProjectType
    description: str
    created_at: datetime


class TagCreate(BaseModel):
    name: TagName


class Tag(BaseModel):
    name: str
    created_at: datetime


class Region(BaseModel):
    """A box in normalized coordinates: fractions of the image's width and height."""

    tag: TagName
    left: float = Field(ge=0.0, le=1.0)
    top: float = Field(ge=0.0, le=1.0)
    width: float = Field(gt=0.0, le=1.0)
    height: float = Field(gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _inside_image(self) -> Region:
        if self.left + self.width > 1.0 + 1e-6 or self.top + self.height > 1.0 + 1e-6:
            raise ValueError("the box must lie inside the image (left + width <= 1, top + height <= 1)")
        return self


class ImageTagsUpdate(BaseModel):
    tags: list[TagName] = Field(max_length=500)


class ImageRegionsUpdate(BaseModel):
    regions: list[Region] = Field(max_length=1000)


class ImageSplitUpdate(BaseModel):
    split: Split | None


class LabelScore(BaseModel):
    label: str
    probability: float


class SuggestedRegion(Region):
    score: float = Field(description="The detector's confidence in this box.")


class Suggestion(BaseModel):
    """Labels a model proposed for the image; they label nothing until a person accepts them."""

    model: str | None
    version: int | None
    alias: str | None = None
    task: str | None = None
    tags: list[str]
    regions: list[SuggestedRegion]
    scores: list[LabelScore] = Field(default_factory=list, description="The model's top labels (classification).")
    uncertain: bool = False
    created_at: datetime


class Image(BaseModel):
    id: str = Field(description="The SHA-256 of the image's bytes.")
    project_id: str
    filename: str
    content_type: str
    width: int
    height: int
    size: int
    tags: list[str]
    regions: list[Region]
    split: Split | None
    labeled: bool = Field(description="A person has labeled it: one tag (multiclass), or a tag list / box "
                                      "list that may be empty to say 'none here' (multilabel, detection).")
    suggestion: Suggestion | None = Field(default=None, description="The model's proposal awaiting a person "
                                                                     "(POST .../suggest), if any.")
    label_revision: int = Field(default=0, description="Counts the changes of its labels: 0 unlabeled, then 1, "
                                                       "2, ...; a model version's lineage records it.")
    created_at: datetime
    updated_at: datetime
    etag: str = Field(description="Send back as If-Match to update only if nobody changed the image since.")


class UploadResult(BaseModel):
    filename: str
    status: Literal["created", "duplicate", "rejected"]
    image: Image | None = None
    error: str | None = None


class UploadResponse(BaseModel):
    created: int
    duplicates: int
    rejected: int
    results: list[UploadResult]


class TagList(BaseModel):
    data: list[Tag]


class ProjectStats(BaseModel):
    image_count: int
    labeled_count: int
    tag_counts: dict[str, int] = Field(description="Labeled images carrying each tag (boxes count once per image).")
    split_counts: dict[str, int] = Field(description="Images per explicit split; `none` for images without one.")


# -- review queue of captured predictions ------------------------------------------------
ReviewStatus = Literal["pending", "accepted", "rejected"]


class ReviewCapture(BaseModel):
    """What the scoring service says about a captured prediction (the `capture` form field)."""

    model: str = Field(max_length=128)
    version: int
    alias: str | None = Field(default=None, max_length=64)
    variant: str | None = Field(default=None, max_length=32)
    task: str = Field(max_length=32)
    uncertainty: float = Field(ge=0.0, le=1.0, description="0 sure … 1 a coin toss: the queue's order.")
    prediction: JsonObject = Field(description="The answer as the scoring service gave it: label, "
                                               "probability, predictions, tags or detections.")
    image: JsonObject = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=64)
    captured_at: str | None = Field(default=None, max_length=64)


class ReviewLabels(BaseModel):
    tags: list[str]
    regions: list[Region]


class ReviewItem(ReviewCapture):
    prediction: StoredJsonObject
    image: StoredJsonObject = Field(default_factory=dict)
    id: str
    project_id: str
    status: ReviewStatus
    filename: str
    content_type: str
    width: int
    height: int
    size: int
    sha256: str
    suggested: ReviewLabels = Field(description="The labels the prediction proposes for this project.")
    labels: ReviewLabels | None = Field(default=None, description="The labels given on acceptance.")
    labels_from: Literal["prediction", "reviewer", "existing"] | None = Field(
        default=None, description="existing: the image was already labeled by a person; those labels were kept.")
    image_id: str | None = Field(default=None, description="The project image it became (accepted).")
    reason: str | None = Field(default=None, description="Why it was rejected.")
    created_at: datetime
    updated_at: datetime
    reviewed_at: datetime | None = None
    etag: str = Field(description="Send back as If-Match to decide only if nobody changed the item since.")


class ReviewAccept(BaseModel):
    """The labels to give the image; leave both out to take the prediction's."""

    tags: list[TagName] | None = Field(default=None, max_length=500)
    regions: list[Region] | None = Field(default=None, max_length=1000)


class ReviewReject(BaseModel):
    reason: str = Field(default="", max_length=2000)


class ReviewAccepted(BaseModel):
    item: ReviewItem
    image: Image


class ReviewReopened(BaseModel):
    item: ReviewItem
    image: Image | None = Field(description="The image whose labels were put back; null when none changed.")


class ReviewCaptureStatus(BaseModel):
    scoring_reachable: bool
    capture_rate: float | None = Field(description="The share of predictions the scoring service captures for "
                                                   "review (0: capture is off); null when it could not be asked.")
    model_served: bool | None = Field(description="Whether the scoring service serves the project's model "
                                                  "(named like the project); null when it could not be asked.")
    how_to_turn_on: str
    detail: str | None = None


# -- model-assisted labeling and label history ----------------------------------------
class SuggestRequest(BaseModel):
    model: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                              description="The registry model to ask (the scoring service must serve it, GET "
                                          "/v1/models there); leave out for the project's own model, named like "
                                          "the project. Its task must fit the project's type.")
    alias: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$",
                              description="A secondary alias the scoring service serves for its primary model "
                                          "(which must be `model`); leave out for the served version.")
    image_ids: list[str] | None = Field(default=None, max_length=1000,
                                        description="The images to suggest labels for; leave out for the "
                                                    "unlabeled ones (up to `limit`).")
    limit: int = Field(default=100, ge=1, le=1000)


class SuggestFailure(BaseModel):
    image_id: str
    error: str | None


class SuggestedImage(BaseModel):
    image_id: str
    tags: list[str]
    regions: list[SuggestedRegion]


class SuggestResponse(BaseModel):
    model: str | None = None
    version: int | None = None
    alias: str | None = None
    suggested: int
    empty: int = Field(default=0, description="Suggestions that propose nothing (no tag, no box): accepting one "
                                              "needs empty=true.")
    failed: list[SuggestFailure]
    results: list[SuggestedImage]


class LabelState(BaseModel):
    tags: list[str]
    regions: list[Region]
    labeled: bool


class LabelHistoryEntry(BaseModel):
    id: str
    image_id: str
    at: datetime
    who: str = Field(description="The name of the API key that made the change (`api-key` for unnamed keys).")
    source: Literal["person", "suggestion", "review", "upload", "import", "bulk"]
    previous: LabelState | None = Field(description="The labels before; null when the image was uploaded labeled.")
    labels: LabelState
