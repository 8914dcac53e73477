"""The Azure AI Search custom Web API skill contract, for classification and detection.

Request: `{"values": [{"recordId": "1", "data": {"image": ...}}, ...]}` where the image
is a normalized-image object (`{"$type": "file", "data": "<base64>", ...}`), a base64
string or data URL, or a URL (`data.image.url`, `data.imageUrl` or `data.url`) that is
fetched only when the service is configured to (`VISIONDOCK_SCORING_SKILL_FETCH_URLS`,
optionally limited to `VISIONDOCK_SCORING_SKILL_URL_HOSTS`), through the SSRF guard in
`fetch_guard.py`.

Response: every record answered under its `recordId` with `data`, `errors` and
`warnings`; a bad record gets its own error while the others succeed. Only a body that
is not a skill request at all is refused as a whole. The records' images share one pixel budget
(VISIONDOCK_MAX_REQUEST_PIXELS), checked from each image's header before it is decoded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from visiondock.errors import DomainError, InvalidInput, TooLarge
from visiondock.images import PixelBudget, image_pixels
from visiondock.vocabulary import CLASSIFICATION_TASKS, DETECTION
from visiondock.web import http_status

from .fetch_guard import GuardedFetcher
from .inputs import decode_base64
from .model import LoadedModel
from .service import ScoringService

log = logging.getLogger(__name__)
SKILL_TASKS = {"classify": CLASSIFICATION_TASKS, "detect": (DETECTION,)}


def _url_of(data: dict[str, Any]) -> str | None:
    image = data.get("image")
    for candidate in (image.get("url") if isinstance(image, dict) else None, data.get("imageUrl"), data.get("url")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def image_source(data: Any) -> tuple[str, str]:
    """Where a record's image is: ("base64", text) or ("url", address); 400 when it has none."""
    if not isinstance(data, dict):
        raise InvalidInput("the record has no 'data' object")
    image = data.get("image")
    if isinstance(image, dict) and image.get("data"):
        return "base64", image["data"]
    if isinstance(image, str) and image and not image.startswith(("http://", "https://")):
        return "base64", image
    if isinstance(data.get("image_base64"), str):
        return "base64", data["image_base64"]
    url = image if isinstance(image, str) and image else _url_of(data)
    if url:
        return "url", url
    raise InvalidInput("the record has no image: send data.image as a normalized image object "
                     '({"data": "<base64>"}), a base64 string, or a URL')


def skill_output(kind: str, answer: dict[str, Any]) -> dict[str, Any]:
    """What a skill returns for one record: the fields a skillset maps to index fields."""
    common = {"model": answer["model"], "version": answer["version"], "uncertain": answer["uncertain"]}
    if kind == "detect":
        objects = [{"label": d["label"], "score": d["score"], "box": d["box"], "region": d["region"]}
                   for d in answer["detections"]]
        return {"objects": objects, "labels": sorted({o["label"] for o in objects}), "count": len(objects),
                **common}
    output = {"label": answer["label"], "probability": answer["probability"],
              "predictions": answer["predictions"], **common}
    if "tags" in answer:
        output["tags"] = [t["label"] for t in answer["tags"]]
    if "face_found" in answer:
        output["faceFound"] = answer["face_found"]
    return output


class SkillRunner:
    def __init__(self, scoring: ScoringService, fetcher: GuardedFetcher) -> None:
        self.scoring = scoring
        self.fetcher = fetcher

    async def run(self, kind: str, payload: Any, *, model: LoadedModel) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("values"), list):
            raise InvalidInput('a skill request is {"values": [{"recordId": "...", "data": {...}}, ...]}')
        records = payload["values"]
        limit = self.scoring.settings.scoring_max_skill_records
        if len(records) > limit:
            raise TooLarge(f"at most {limit} records per request; got {len(records)}")
        if model.task not in SKILL_TASKS[kind]:
            other = next(k for k, tasks in SKILL_TASKS.items() if model.task in tasks)
            raise InvalidInput(f"the served model {model.name} is a {model.task} model: use /v1/skills/{other}")
        budget = PixelBudget(self.scoring.settings.max_request_pixels)
        answers = await asyncio.gather(*(self._record(kind, record, model, budget) for record in records))
        return {"values": answers}

    async def _record(self, kind: str, record: Any, model: LoadedModel, budget: PixelBudget) -> dict[str, Any]:
        record_id = record.get("recordId") if isinstance(record, dict) else None
        if not isinstance(record_id, str):  # echoed back: only what the contract allows
            record_id = None
        reply: dict[str, Any] = {"recordId": record_id, "data": {}, "errors": [], "warnings": []}
        try:
            if record_id is None:
                raise InvalidInput("the record has no recordId (a string)")
            kind_of_source, source = image_source(record.get("data"))
            if kind_of_source == "url":
                data = await self.fetcher.fetch(source)
            else:  # megabytes of base64: not on the event loop
                data = await self.scoring.off_loop(decode_base64, source, "data.image")
            budget.charge(await self.scoring.off_loop(image_pixels, data))
            answer = await self.scoring.predict(data, model=model, source=f"skill:{kind}",
                                                filename=f"record-{record_id}")
            reply["data"] = skill_output(kind, answer)
        except DomainError as exc:
            reply["errors"].append({"message": exc.message, "statusCode": http_status(exc)})
        except Exception:
            log.exception("skill record %s failed", record_id)
            reply["errors"].append({"message": "internal error scoring this record; the service logged it",
                                    "statusCode": 500})
        return reply
