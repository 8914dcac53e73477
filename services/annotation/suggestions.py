"""Model-assisted labeling: the project's own model suggests labels a person then accepts or corrects.

`suggest` sends the chosen images (or the project's unlabeled ones) to the scoring
service over REST, to the project's model: by default the registry model named like the
project (what `visiondock train` registers), or another one the request names. The
scoring service serves it at `/v1/models/<model>/predict/batch` (VISIONDOCK_SCORING_MODELS,
or every production model under `visiondock up`); a service that serves one model only
is asked at `/v1/predict/batch` when that model is the one, and a request naming an alias
at `/v1/aliases/<alias>/predict/batch`. Every answer must come from the model asked for,
with a task that fits the project (a detector for a detection project, a classifier of
the same kind otherwise), or nothing is stored. Each answer is stored on the image as its
`suggestion`: the model's name, version and alias, the proposed tags or boxes with their
scores. A suggestion never labels the image: `accept` makes it the image's labels (history
source `suggestion`), and an empty one (no box, no tag) only when the caller says it means
"nothing here"; any labeling by hand replaces it, `dismiss` drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from visiondock.auth import API_KEY_HEADER
from visiondock.blob_keys import image_blob_key
from visiondock.errors import Conflict, InvalidInput, NotFound, Unavailable
from visiondock.storage import Document
from visiondock.timeutil import utc_now

from .history import LabelChange
from .images import ImageLibrary
from .project import REGION_FIELDS, Labels, Project, ProjectRef, proposed_labels

# Images per request to the scoring service: its dynamic batcher fills one inference with them.
SCORING_CHUNK = 8
MAX_IMAGES_PER_CALL = 1000

log = logging.getLogger(__name__)

def check_task_fits(project: Project, model: str, task: str | None) -> None:
    """Refuse a model whose answers cannot label this project (a classifier for a detection project...)."""
    if task is None or project.fits_task(task):
        return
    raise Conflict(f"model {model!r} is a {task} model and cannot suggest labels for {project.id!r}, a "
                   f"{project.type} project; train the project's own model (it is named {project.id!r}) or "
                   f"name a {' or '.join(project.fitting_tasks)} model", code="model_task_mismatch")


def is_empty(suggestion: dict[str, Any]) -> bool:
    return not suggestion.get("tags") and not suggestion.get("regions")


def suggestion_from_answer(project_type: str, answer: dict[str, Any], known_tags: set[str]) -> dict[str, Any]:
    """What a scoring answer proposes for an image of a project of `project_type`, scores kept; labels
    naming none of `known_tags` dropped."""
    proposed = proposed_labels(project_type, answer, scores=True).keeping(known_tags)
    tags, regions = proposed.tags, proposed.regions
    scores = [{"label": p["label"], "probability": float(p["probability"])}
              for p in answer.get("predictions") or [] if isinstance(p.get("label"), str)]
    return {"model": answer.get("model"), "version": answer.get("version"), "alias": answer.get("alias"),
            "task": answer.get("task"), "tags": tags, "regions": regions, "scores": scores,
            "uncertain": bool(answer.get("uncertain")), "created_at": utc_now()}


class Suggestions:
    def __init__(self, library: ImageLibrary, *, scoring_url: str, api_key: str, timeout: float = 120.0) -> None:
        self.library = library
        self.scoring_url = scoring_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    # -- asking the model ---------------------------------------------------------
    def suggest(self, project: ProjectRef, *, model: str | None = None, alias: str | None = None,
                image_ids: Sequence[str] | None = None, limit: int = 100) -> dict[str, Any]:
        project = self.library.projects.resolve(project)
        project_id = project.id
        model = model or project_id
        known_tags = self.library.projects.tag_names(project)
        images = self._chosen(project, image_ids, limit)
        suggested: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        answered_by: dict[str, Any] = {}
        with httpx.Client(base_url=self.scoring_url, headers={API_KEY_HEADER: self.api_key},
                          timeout=self.timeout) as http:
            path = self._route(http, project, model, alias)
            for start in range(0, len(images), SCORING_CHUNK):
                chunk = images[start:start + SCORING_CHUNK]
                files = [("files", (doc.id, self.library.blobs.get(image_blob_key(project_id, doc.id)),
                                    doc.data["content_type"])) for doc in chunk]
                results = self._score(http, path, files)
                # Every answer of the chunk is checked before any is stored: a wrong model stores nothing.
                for result in results:
                    if result.get("status") == 200:
                        self._check_answer(project, model, result["answer"])
                for doc, result in zip(chunk, results, strict=True):
                    if result.get("status") != 200:
                        failed.append({"image_id": doc.id, "error": (result.get("error") or {}).get("detail")})
                        continue
                    suggestion = suggestion_from_answer(project.type, result["answer"], known_tags)
                    answered_by = {"model": suggestion["model"], "version": suggestion["version"],
                                   "alias": suggestion["alias"]}
                    self.library.set_suggestion(project, doc.id, suggestion)
                    suggested.append({"image_id": doc.id, "tags": suggestion["tags"],
                                      "regions": suggestion["regions"]})
        return {"model": model, **answered_by, "suggested": len(suggested),
                "empty": sum(is_empty(s) for s in suggested), "failed": failed, "results": suggested}

    def _route(self, http: httpx.Client, project: Project, model: str, alias: str | None) -> str:
        """Where the scoring service scores with `model`, after checking that its task fits the project."""
        if alias:
            return f"/v1/aliases/{alias}/predict/batch"  # the answers' model name is checked
        served = self._get(http, "/v1/models")
        entry = next((m for m in served.get("models") or [] if m.get("name") == model), None)
        if entry is not None:
            check_task_fits(project, model, (entry.get("model") or {}).get("task"))
            return f"/v1/models/{model}/predict/batch"
        # A service started for one model (VISIONDOCK_SCORING_MODEL_PATH) lists none by name.
        primary = (self._get(http, "/v1/model").get("model") or {})
        if primary.get("name") == model:
            check_task_fits(project, model, primary.get("task"))
            return "/v1/predict/batch"
        names = ", ".join(m["name"] for m in served.get("models") or [] if m.get("name")) or "none by name"
        raise NotFound(f"the scoring service does not serve model {model!r} (it serves {names}); train the "
                       f"project and promote a version to production (`visiondock up` serves every production "
                       f"model), or name a served model", code="model_not_served")

    @staticmethod
    def _check_answer(project: Project, model: str, answer: dict[str, Any]) -> None:
        if answer.get("model") != model:
            raise Conflict(f"the scoring service answered with model {answer.get('model')!r}, not {model!r}; "
                           "no suggestion was stored", code="wrong_model")
        check_task_fits(project, model, answer.get("task"))

    def _chosen(self, project: Project, image_ids: Sequence[str] | None, limit: int) -> list[Document]:
        if image_ids:
            if len(image_ids) > MAX_IMAGES_PER_CALL:
                raise InvalidInput(f"at most {MAX_IMAGES_PER_CALL} images per call; got {len(image_ids)}")
            return [self.library.get(project, image_id) for image_id in dict.fromkeys(image_ids)]
        docs: list[Document] = []
        continuation = None
        while len(docs) < limit:
            page, continuation = self.library.list(project, labeled=False, limit=min(limit - len(docs), 1000),
                                                   continuation=continuation)
            docs.extend(page)
            if continuation is None:
                break
        return docs

    def _get(self, http: httpx.Client, path: str) -> dict[str, Any]:
        try:
            response = http.get(path)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise self._refused(response)
        body: dict[str, Any] = response.json()
        return body

    def _unreachable(self, exc: Exception) -> Unavailable:
        return Unavailable(f"cannot reach the scoring service at {self.scoring_url} ({exc}); start it or set "
                           "VISIONDOCK_SCORING_URL", code="scoring_unavailable")

    @staticmethod
    def _refused(response: httpx.Response) -> NotFound | Unavailable:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        kind = NotFound if response.status_code == 404 else Unavailable
        return kind(f"the scoring service could not suggest labels: {detail} (HTTP {response.status_code})",
                    code="scoring_failed")

    def _score(self, http: httpx.Client, path: str, files: list[Any]) -> list[dict[str, Any]]:
        try:
            response = http.post(path, files=files)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise self._refused(response)
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    # -- a person's answer --------------------------------------------------------
    def _suggestion(self, project: Project, image_id: str) -> dict[str, Any]:
        suggestion = self.library.get(project, image_id).data.get("suggestion")
        if not suggestion or not isinstance(suggestion, dict):
            raise Conflict(f"image {image_id!r} has no suggestion to act on; ask for one with POST "
                           f"/v1/projects/{project.id}/suggest", code="no_suggestion")
        return suggestion

    def accept(self, project: ProjectRef, image_id: str, *, who: str, if_match: str | None = None,
               empty: bool = False) -> Document:
        """The suggestion becomes the image's labels (which clears it); an empty one only with `empty`."""
        project = self.library.projects.resolve(project)
        suggestion = self._suggestion(project, image_id)
        labels = Labels(list(suggestion["tags"]),
                        [{k: r[k] for k in REGION_FIELDS} for r in suggestion["regions"]])
        if labels.empty and not empty and project.is_labeled(labels.tags):
            what = "no box" if project.labels_with_boxes else "no tag"
            raise Conflict(f"the suggestion has {what}: accepting it labels the image as showing nothing of this "
                           "project. Label the image by hand, or accept with empty=true if that is so",
                           code="empty_suggestion")
        if not project.is_labeled(labels.tags):
            raise InvalidInput("the suggestion names no tag of this project; label the image by hand",
                               code="empty_suggestion")
        return self.library.set_labels(project, image_id, labels, if_match=if_match,
                                       change=LabelChange(who=who, source="suggestion"))

    def dismiss(self, project: ProjectRef, image_id: str) -> Document:
        project = self.library.projects.resolve(project)
        self._suggestion(project, image_id)
        return self.library.set_suggestion(project, image_id, None)

    def pending(self, project: ProjectRef, *, limit: int,
                continuation: str | None) -> tuple[list[Document], str | None]:
        """Images with a suggestion nobody acted on yet: the grid's `awaiting review` filter."""
        return self.library.with_suggestion(project, limit=limit, continuation=continuation)
