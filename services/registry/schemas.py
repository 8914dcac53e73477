"""Request and response bodies of the registry API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from visiondock.schemas import JsonObject, StoredJsonObject

ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
RUN_ID_PATTERN = r"^run-[a-f0-9]{16}$"
RunId = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN)]
# Variants of a version besides the fp32 `model.onnx`, each a file `model.<variant>.onnx`.
VariantName = Literal["int8", "fp16"]  # visiondock.vocabulary.VARIANTS


class Splits(BaseModel):
    """The ids (SHA-256) of the images each part of the data set held."""

    train: list[str] = Field(default_factory=list)
    validation: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)


class VersionMetadata(BaseModel):
    """What the trainer sends with a new version's ONNX file."""

    task: str = Field(description="multiclass, multilabel, detection or face")
    labels: list[str] = Field(min_length=1)
    project_id: str | None = None
    description: str = Field(default="", max_length=2000)
    metrics: JsonObject = Field(default_factory=dict, description="Held-out metrics, as the trainer computed them.")
    splits: Splits = Field(default_factory=Splits)
    params: JsonObject = Field(default_factory=dict, description="Training parameters.")
    run_id: str | None = Field(default=None, description="The training run that made this version; the "
                                                          "version takes the number the run reserved.")
    lineage: JsonObject = Field(default_factory=dict, description="What it learned from and what made it: "
                                    "dataset snapshot, parameters, code version, parent version "
                                    "(see `GET …/versions/{v}/lineage`).")


MAX_LABEL_ISSUES = 1000


class LabelIssue(BaseModel):
    """One likely label error. Multiclass and face: the given class and the one the models prefer, with
    their out-of-fold probabilities. Multilabel: one tag of the image (`label`), whether it was given, and
    its out-of-fold probability."""

    model_config = ConfigDict(extra="allow")

    image_id: str = Field(description="The image's id (SHA-256) in the project.")
    filename: str = ""
    rank: int = Field(ge=1, description="1 is the most likely error.")
    suspicion: float = Field(ge=0, le=1, description="How likely the label is wrong: 1 - the out-of-fold "
                                                     "probability of what was given (of a missing tag: its "
                                                     "probability).")
    given: str | bool | None = Field(default=None, description="The given class, or (multilabel) whether "
                                                                "`label` was given.")
    given_probability: float | None = None
    suggested: str | None = Field(default=None, description="The class the models prefer.")
    suggested_probability: float | None = None
    label: str | None = Field(default=None, description="Multilabel: the tag in question.")
    probability: float | None = Field(default=None, description="Multilabel: the tag's out-of-fold probability.")


class VersionRegistration(VersionMetadata):
    """The registration form's `metadata`: a version's metadata, plus what the trainer measured
    for each variant file sent with it (stored in the version's `variants`)."""

    variant_metrics: dict[VariantName, JsonObject] = Field(
        default_factory=dict, description="Per variant file (form field of the same name, e.g. `int8`): how "
                                          "closely it agrees with the fp32 model, as the trainer measured.")
    label_issues: list[LabelIssue] | None = Field(
        default=None, max_length=MAX_LABEL_ISSUES,
        description="Likely label errors the trainer found (classification), most likely first: kept beside "
                    "the version's files and listed by `GET …/versions/{v}/label-issues`.")


class LabelIssueList(BaseModel):
    """A version's likely label errors: labeled images whose given label the models that never saw them
    found unlikely (out-of-fold probability below `threshold`), most likely first."""

    model: str
    version: int
    project_id: str | None = None
    threshold: float | None = Field(default=None, description="Out-of-fold probability below which a given "
                                                              "label is listed.")
    checked: int | None = Field(default=None, description="How many labeled images were judged.")
    count: int = Field(description="How many are listed in all (`items` may be a page of them).")
    items: list[LabelIssue]


class Artifact(BaseModel):
    key: str
    sha256: str
    size: int


class VariantArtifact(Artifact):
    """A variant's file with the agreement metrics the trainer measured (e.g. `top1_agreement`)."""

    model_config = ConfigDict(extra="allow")


class ModelVersion(VersionMetadata):
    # As stored: read whole, but for what nests deeper than the limit new versions are held to.
    metrics: StoredJsonObject = Field(default_factory=dict)
    params: StoredJsonObject = Field(default_factory=dict)
    lineage: StoredJsonObject = Field(default_factory=dict)
    model: str
    version: int
    created_at: datetime
    artifact: Artifact
    variants: dict[str, VariantArtifact] = Field(
        default_factory=dict, description="Other files of this version by variant name (`int8`: "
                                          "`artifacts/model.int8.onnx`); empty when there are none.")


class ModelSummary(BaseModel):
    name: str
    latest_version: int
    created_at: datetime
    updated_at: datetime
    aliases: dict[str, int] = Field(default_factory=dict)


class AliasUpdate(BaseModel):
    version: int = Field(ge=1)
    reason: str = Field(default="", max_length=500, description="Why it moves; kept in the alias's history.")


class Alias(BaseModel):
    model: str
    alias: str
    version: int
    updated_at: datetime
    etag: str | None = Field(default=None, description="Changes whenever the alias moves (also the ETag header).")
    previous_version: int | None = Field(default=None, description="After a move: the version it replaced.")


class ResolvedAlias(Alias):
    model_version: ModelVersion
    artifact_url: str = Field(description="Path of the ONNX file on this service.")


class AliasList(BaseModel):
    data: list[Alias]


class AliasServing(BaseModel):
    """Whether the scoring service serves an alias's version (services/registry/serving.py)."""

    model: str
    alias: str
    version: int = Field(description="The version the alias points at.")
    serving: bool = Field(description="The scoring service answers requests for the alias with that version.")
    served_version: int | None = Field(description="The version it answers with now, if any.")
    since: datetime | None = Field(description="When the version it answers with was loaded.")
    state: Literal["serving", "loading", "failed", "not_served", "unreachable"]
    detail: str = Field(description="In words: what serves, or why the version does not serve yet.")


# -- training runs --------------------------------------------------------------------
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "lost"]


class RunLaunch(BaseModel):
    """Start the run's trainer: as a Kubernetes Job, made from the chart's trainer CronJob, or as a
    process beside the registry on one machine (`local`, VISIONDOCK_TRAINING_LAUNCHER)."""

    on: Literal["kubernetes", "local"] = "kubernetes"
    gpu: bool = Field(default=False, description="Use the GPU template (a node with `nvidia.com/gpu`).")


class RunCreate(BaseModel):
    model: ModelName = Field(description="The model the run will register a version of.")
    project_id: ModelName | None = Field(default=None, description="The project to train from (default: the "
                                                                   "model's name).")
    params: JsonObject = Field(default_factory=dict, description="Training options, as asked for; with "
                                   "`launch`, handed to the trainer as flags (`{\"mode\": \"advanced\", "
                                   "\"int8\": true}` -> `--mode advanced --int8`).")
    launch: RunLaunch | None = Field(default=None, description="Also start the training Job. Without it the "
                                     "run waits, queued, for a trainer started some other way.")
    parallel: bool = Field(default=False, description="With `launch`: start it even while another run of the "
                                                      "project is queued or running (without, that is a 409 naming "
                                                      "the active run).")


class TrainingJob(BaseModel):
    """The Kubernetes Job of a launched run, as last seen."""

    name: str
    namespace: str
    gpu: bool = False
    phase: Literal["pending", "running", "succeeded", "failed"] = "pending"
    reason: str | None = Field(default=None, description="e.g. OOMKilled, DeadlineExceeded, BackoffLimitExceeded, "
                                                         "Unschedulable")
    message: str | None = None


class RunUpdate(BaseModel):
    """A progress report. `succeeded` is set by the registry when the run's version is registered."""

    status: Literal["running", "failed"] | None = None
    stage: str | None = Field(default=None, max_length=64, description="e.g. download, features, train, export")
    epoch: int | None = Field(default=None, ge=0)
    epochs: int | None = Field(default=None, ge=0)
    metrics: JsonObject | None = Field(default=None, description="The latest epoch's metrics.")
    error: str | None = Field(default=None, max_length=8000)
    report: JsonObject | None = Field(default=None, description="Skipped images, feature cache use, ...")
    remaining_seconds: float | None = Field(default=None, ge=0, le=10**7,
                                            description="The trainer's estimate of the time left until the run "
                                                        "ends, from its measured pace.")


class TrainingRun(BaseModel):
    id: str
    model: str
    project_id: str | None = None
    status: RunStatus
    stage: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    # As stored: runs reported before JSON depth was bounded still read (their deepest part left out).
    metrics: StoredJsonObject = Field(default_factory=dict)
    error: str | None = None
    report: StoredJsonObject = Field(default_factory=dict)
    params: StoredJsonObject = Field(default_factory=dict)
    reserved_version: int | None = Field(default=None, description="The version number this run will "
                                                                    "register under (also inside its ONNX file).")
    version: int | None = Field(default=None, description="The version it registered (succeeded runs).")
    remaining_seconds: float | None = Field(default=None, description="Seconds left until the run ends, as the "
                                                                      "trainer last estimated them (from the first "
                                                                      "epoch on; none once it finished).")
    expected_finish_at: datetime | None = Field(default=None, description="When the run is expected to end: the "
                                                                          "last estimate's time plus "
                                                                          "`remaining_seconds`.")
    heartbeat_at: datetime | None = Field(default=None, description="The trainer's last report or heartbeat; a "
                                                                    "running run silent too long becomes lost.")
    job: TrainingJob | None = Field(default=None, description="The Kubernetes Job, for runs created with `launch`.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ReservedVersion(BaseModel):
    run_id: str
    model: str
    version: int


# -- alias history --------------------------------------------------------------------
class AliasChange(BaseModel):
    """One recorded change of an alias: a move, a rollback or its deletion."""

    model: str
    alias: str
    sequence: int = Field(description="Counts up with every change (a move that lost a race leaves a gap).")
    action: Literal["move", "rollback", "delete"]
    from_version: int | None = Field(description="The version it pointed at before; null when it was new.")
    to_version: int | None = Field(description="The version it points at after; null when it was deleted.")
    actor: str = Field(description="The name of the API key that changed it.")
    reason: str = ""
    moved_at: datetime


class AliasRollback(BaseModel):
    reason: str = Field(default="", max_length=500)


# -- run housekeeping ----------------------------------------------------------------
class RunCancel(BaseModel):
    reason: str = Field(default="", max_length=500)


class RunLogAppend(BaseModel):
    lines: list[Annotated[str, StringConstraints(max_length=2000)]] = Field(min_length=1, max_length=1000)


class RunLogLine(BaseModel):
    n: int = Field(description="The line's number in the run's log, from 1.")
    text: str


class RunLog(BaseModel):
    lines: list[RunLogLine]
    next: int = Field(description="Pass as `after` to get the lines that come later (to follow the log).")
    total: int = Field(description="How many lines the log has.")
