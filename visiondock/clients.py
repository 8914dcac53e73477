"""HTTP clients of the annotation, registry and scoring APIs.

The trainer, the scoring service, the CLI and the tests all talk to the services
through these, so an API change shows up in one place. Calls that are safe to
repeat are retried on connection errors and 502/503/504 with exponential backoff;
any call that never reached the service (it could not connect) is retried too. A
client may wait out a longer absence (`retry_seconds`: a training Job outlives a
registry rollout instead of failing).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential
from tenacity.stop import stop_base

from visiondock.auth import API_KEY_HEADER
from visiondock.blob_keys import MODEL_FILE, variant_filename

RETRY_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class ServiceError(Exception):
    """A service answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, url: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.url = url

    @property
    def is_not_found(self) -> bool:
        return self.status == 404


class ServiceUnavailableError(ServiceError):
    """Nothing answered at the service's address, or it answered 502/503/504."""


class ServiceNotReachedError(ServiceUnavailableError):
    """No connection could be made: the request never reached the service, so any call may be repeated."""


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success or response.status_code == 304:  # 304 only answers a conditional GET
        return
    try:
        body = response.json()
        message = body.get("detail") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
    except ValueError:
        message, code = None, None
    message = message if isinstance(message, str) else (response.text[:300] or response.reason_phrase)
    cls = ServiceUnavailableError if response.status_code in RETRY_STATUSES else ServiceError
    raise cls(f"{response.request.method} {response.request.url.path}: {response.status_code} {message}",
              status=response.status_code, code=code, url=str(response.request.url))


def _download(stream: contextlib.AbstractContextManager[httpx.Response], destination: Path) -> httpx.Headers:
    """Stream a response body to `destination` (whole or not at all); the response's headers."""
    partial = destination.with_suffix(destination.suffix + ".partial")
    with stream as response:
        if not response.is_success:
            response.read()
            _raise_for_status(response)
        with partial.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    partial.replace(destination)
    return response.headers


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise ServiceError(f"{response.request.method} {response.request.url.path}: expected a JSON object, "
                           f"got {type(body).__name__}", status=response.status_code, url=str(response.request.url))
    return body


def _json_objects(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ServiceError(f"expected a list of JSON objects, got {type(value).__name__}")
    return value


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ServiceUnavailableError)


class ServiceClient:
    service = "service"

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0, retries: int = 4,
                 retry_seconds: float | None = None, http: httpx.Client | None = None) -> None:
        """`retries` attempts of a call that may be repeated; with `retry_seconds`, attempts until that long
        has passed instead (at most 10 s apart). `http`: send through this client instead of opening one
        (an app served in process, as Starlette's TestClient serves it); the key is added to its headers."""
        self.base_url = base_url.rstrip("/")
        if http is None:
            http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=5.0))
        http.headers[API_KEY_HEADER] = api_key
        self._http = http
        self._retries = max(1, retries)
        self._retry_seconds = retry_seconds

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, repeatable: bool = False, **kwargs: Any) -> httpx.Response:
        """`repeatable`: a call the service answers the same way however often it arrives (beside the
        idempotent methods), retried like them."""
        method = method.upper()
        # A POST that reached the server may have taken effect; repeat only what is safe to repeat,
        # and any request that never connected.
        repeatable = repeatable or method in IDEMPOTENT_METHODS

        def worth_repeating(exc: BaseException) -> bool:
            return isinstance(exc, ServiceNotReachedError) or (repeatable and _is_retryable(exc))

        stop: stop_base
        if self._retry_seconds is None:
            stop, wait = stop_after_attempt(self._retries), wait_exponential(multiplier=0.2, max=3.0)
        else:
            stop, wait = stop_after_delay(self._retry_seconds), wait_exponential(multiplier=0.2, max=10.0)

        @retry(stop=stop, wait=wait, retry=retry_if_exception(worth_repeating), reraise=True)
        def send() -> httpx.Response:
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise ServiceNotReachedError(
                    f"cannot reach the {self.service} service at {self.base_url} ({exc})", url=self.base_url
                ) from exc
            except httpx.TimeoutException as exc:
                raise ServiceUnavailableError(
                    f"the {self.service} service at {self.base_url} did not answer in time", url=self.base_url
                ) from exc
            except httpx.TransportError as exc:  # e.g. the service died mid-request
                raise ServiceUnavailableError(
                    f"the connection to the {self.service} service at {self.base_url} broke before it answered "
                    f"({type(exc).__name__})", url=self.base_url
                ) from exc
            _raise_for_status(response)
            return response

        return send()

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """`request` for the calls the service answers with a JSON object."""
        return _json_object(self.request(method, path, **kwargs))

    def get_object(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.call("GET", path, **kwargs)

    def is_ready(self) -> bool:
        try:
            return self._http.get("/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def readiness(self) -> dict[str, Any]:
        try:
            return _json_object(self._http.get("/readyz", timeout=2.0))
        except (httpx.HTTPError, ValueError, ServiceError) as exc:
            return {"status": "unreachable", "error": str(exc)}


def _paged(client: ServiceClient, path: str, params: dict[str, Any], page_size: int) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        query = {**{k: v for k, v in params.items() if v is not None}, "limit": page_size}
        if token:
            query["continuation"] = token
        page = client.get_object(path, params=query)
        yield from page["data"]
        token = page.get("continuation")
        if not token:
            return


class AnnotationClient(ServiceClient):
    service = "annotation"

    def create_project(self, project_id: str, project_type: str, *, description: str = "",
                       tags: Sequence[str] = ()) -> dict[str, Any]:
        body = {"id": project_id, "type": project_type, "description": description, "tags": list(tags)}
        return self.call("POST", "/v1/projects", json=body)

    def get_project(self, project_id: str) -> dict[str, Any]:
        return self.get_object(f"/v1/projects/{project_id}")

    def list_projects(self) -> list[dict[str, Any]]:
        return list(_paged(self, "/v1/projects", {}, 200))

    def create_tag(self, project_id: str, name: str) -> dict[str, Any]:
        return self.call("POST", f"/v1/projects/{project_id}/tags", json={"name": name})

    def list_tags(self, project_id: str) -> list[dict[str, Any]]:
        return _json_objects(self.get_object(f"/v1/projects/{project_id}/tags")["data"])

    def upload_images(
        self,
        project_id: str,
        files: Sequence[tuple[str, bytes]],
        *,
        tags: Sequence[str] = (),
        split: str | None = None,
    ) -> dict[str, Any]:
        """Upload images in one multipart request; the answer lists each file's outcome."""
        form: dict[str, Any] = {}
        if tags:
            form["tags"] = ",".join(tags)
        if split:
            form["split"] = split
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        return self.call("POST", f"/v1/projects/{project_id}/images", data=form, files=parts)

    def list_images(self, project_id: str, *, labeled: bool | None = None, tag: str | None = None,
                    split: str | None = None, page_size: int = 500) -> Iterator[dict[str, Any]]:
        params = {"labeled": None if labeled is None else str(labeled).lower(), "tag": tag, "split": split}
        return _paged(self, f"/v1/projects/{project_id}/images", params, page_size)

    def get_image(self, project_id: str, image_id: str) -> dict[str, Any]:
        return self.get_object(f"/v1/projects/{project_id}/images/{image_id}")

    def get_image_bytes(self, project_id: str, image_id: str) -> bytes:
        return self.request("GET", f"/v1/projects/{project_id}/images/{image_id}/content").content

    def set_image_tags(self, project_id: str, image_id: str, tags: Sequence[str]) -> dict[str, Any]:
        return self.call("PUT", f"/v1/projects/{project_id}/images/{image_id}/tags",
                         json={"tags": list(tags)})

    def set_image_regions(self, project_id: str, image_id: str, regions: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self.call("PUT", f"/v1/projects/{project_id}/images/{image_id}/regions",
                         json={"regions": list(regions)})

    # -- datasets, tags, projects -------------------------------------------------------
    def import_samples(self, project_id: str, files: Sequence[tuple[str, bytes]],
                       manifest: dict[str, Any]) -> dict[str, Any]:
        """Import a batch of images with their labels (`manifest["samples"][i]` describes `files[i]`)."""
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        return self.call("POST", f"/v1/projects/{project_id}/imports/samples",
                         data={"manifest": json.dumps(manifest)}, files=parts)

    def export_dataset(self, project_id: str, fmt: str, destination: Path, *, split: str | None = None,
                       image_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Stream a dataset export to `destination`; the image count and the images left out."""
        path = f"/v1/projects/{project_id}/export"
        if image_ids is None:
            stream = self._http.stream("GET", path, params={"format": fmt, **({"split": split} if split else {})})
        else:
            stream = self._http.stream("POST", path, json={"format": fmt, "split": split,
                                                           "image_ids": list(image_ids)})
        headers = _download(stream, destination)
        return {"images": int(headers.get("X-Image-Count", 0)), "left_out": int(headers.get("X-Left-Out", 0))}

    def rename_tag(self, project_id: str, tag: str, new_name: str, *, merge: bool = False) -> dict[str, Any]:
        return self.call("POST", f"/v1/projects/{project_id}/tags/{tag}/rename",
                         json={"name": new_name, "merge": merge})

    def delete_tag(self, project_id: str, tag: str, *, confirm: bool = False) -> dict[str, Any]:
        return self.call("DELETE", f"/v1/projects/{project_id}/tags/{tag}",
                         params={"confirm": str(confirm).lower()})

    def delete_project(self, project_id: str, *, confirm: bool = False) -> dict[str, Any]:
        return self.call("DELETE", f"/v1/projects/{project_id}", params={"confirm": str(confirm).lower()})

    # -- review queue of captured predictions ----------------------------------------
    def submit_review_item(self, project_id: str, item_id: str, image: bytes, capture: dict[str, Any], *,
                           filename: str = "capture", content_type: str = "application/octet-stream",
                           ) -> dict[str, Any]:
        """Hand a captured prediction to the project's review queue (idempotent on `item_id`)."""
        return self.call("PUT", f"/v1/projects/{project_id}/review-items/{item_id}",
                         data={"capture": json.dumps(capture)},
                         files={"image": (filename, image, content_type)})

    def list_review_items(self, project_id: str, *, status: str = "pending",
                          page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Captured predictions, most uncertain first."""
        return _paged(self, f"/v1/projects/{project_id}/review-items", {"status": status}, page_size)

    def accept_review_item(self, project_id: str, item_id: str, *, tags: Sequence[str] | None = None,
                           regions: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = list(tags)
        if regions is not None:
            body["regions"] = list(regions)
        return self.call("POST", f"/v1/projects/{project_id}/review-items/{item_id}/accept", json=body)

    def reject_review_item(self, project_id: str, item_id: str, *, reason: str = "") -> dict[str, Any]:
        return self.call("POST", f"/v1/projects/{project_id}/review-items/{item_id}/reject",
                         json={"reason": reason})


class RegistryClient(ServiceClient):
    service = "registry"

    def register_version(self, model: str, onnx_path: Path, metadata: dict[str, Any], *,
                         variants: Mapping[str, Path] | None = None) -> dict[str, Any]:
        """Register a version; with `variants` also variant files by name (`{"int8": path}`; the
        metrics of each in `metadata["variant_metrics"][name]`). With `metadata["run_id"]` the
        version takes the number the run reserved and the run becomes `succeeded`."""
        with contextlib.ExitStack() as stack:
            files = {"model": (MODEL_FILE, stack.enter_context(onnx_path.open("rb")), "application/octet-stream")}
            for name, path in (variants or {}).items():
                files[name] = (variant_filename(name), stack.enter_context(path.open("rb")), "application/octet-stream")
            return self.call("POST", f"/v1/models/{model}/versions", data={"metadata": json.dumps(metadata)},
                             files=files)

    def get_lineage(self, model: str, version: int) -> dict[str, Any]:
        """What a version learned from (its dataset snapshot) and what made it."""
        return self.get_object(f"/v1/models/{model}/versions/{version}/lineage")

    def list_models(self) -> list[dict[str, Any]]:
        return list(_paged(self, "/v1/models", {}, 200))

    def list_versions(self, model: str) -> list[dict[str, Any]]:
        return list(_paged(self, f"/v1/models/{model}/versions", {}, 200))

    def get_version(self, model: str, version: int) -> dict[str, Any]:
        return self.get_object(f"/v1/models/{model}/versions/{version}")

    def label_issues(self, model: str, version: int, *, limit: int | None = None) -> dict[str, Any]:
        """The likely label errors a version's training listed, most likely first."""
        return self.get_object(f"/v1/models/{model}/versions/{version}/label-issues",
                             params={"limit": limit} if limit else None)

    def set_alias(self, model: str, alias: str, version: int, *, reason: str = "",
                  if_match: str | None = None) -> dict[str, Any]:
        """Move an alias; the answer's `previous_version` is the version it replaced."""
        headers = {"If-Match": if_match} if if_match else {}
        return self.call("PUT", f"/v1/models/{model}/aliases/{alias}", json={"version": version, "reason": reason},
                         headers=headers)

    def rollback_alias(self, model: str, alias: str, *, reason: str = "") -> dict[str, Any]:
        """Move an alias back to the version it pointed at before its last move."""
        return self.call("POST", f"/v1/models/{model}/aliases/{alias}/rollback", json={"reason": reason})

    def compare_versions(self, model: str, a: int, b: int) -> dict[str, Any]:
        """Headline and per-class metrics of two versions with `b - a` and better/worse marks."""
        return self.get_object(f"/v1/models/{model}/compare", params={"a": a, "b": b})

    def alias_history(self, model: str, alias: str) -> list[dict[str, Any]]:
        """Every change of an alias, newest first."""
        return list(_paged(self, f"/v1/models/{model}/aliases/{alias}/history", {}, 200))

    def get_alias(self, model: str, alias: str) -> dict[str, Any]:
        """The alias with the version it points at (its metadata and artifact checksum)."""
        return self.get_object(f"/v1/models/{model}/aliases/{alias}")

    def get_alias_if_changed(self, model: str, alias: str,
                             etag: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """`get_alias`, or None when the alias still has `etag` (HTTP 304); with the current ETag."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self.request("GET", f"/v1/models/{model}/aliases/{alias}", headers=headers)
        current = response.headers.get("ETag")
        if response.status_code == 304:
            return None, current or etag
        return _json_object(response), current

    def download_artifact(self, model: str, version: int, destination: Path, variant: str | None = None) -> Path:
        """Download a version's fp32 `model.onnx`, or a variant's file (`variant="int8"`: `model.int8.onnx`)."""
        filename = variant_filename(variant)
        destination.parent.mkdir(parents=True, exist_ok=True)
        _download(self._http.stream("GET", f"/v1/models/{model}/versions/{version}/artifacts/{filename}"),
                  destination)
        return destination

    # -- training runs ---------------------------------------------------------------
    def create_run(self, model: str, *, project_id: str | None = None, params: dict[str, Any] | None = None,
                   launch: dict[str, Any] | None = None) -> dict[str, Any]:
        """A queued run; with `launch` ({"on": "kubernetes", "gpu": bool}) the registry also starts its Job."""
        body = {"model": model, "project_id": project_id, "params": params or {}, "launch": launch}
        return self.call("POST", "/v1/runs", json=body)

    def job_logs(self, run_id: str, *, tail: int = 200) -> str:
        """The pod log of a run started as a Kubernetes Job."""
        return self.request("GET", f"/v1/runs/{run_id}/job-logs", params={"tail": tail}).text

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.get_object(f"/v1/runs/{run_id}")

    def list_runs(self, *, model: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        return list(_paged(self, "/v1/runs", {"model": model, "status": status}, 200))

    def update_run(self, run_id: str, **changes: Any) -> dict[str, Any]:
        """Report progress: status ("running"/"failed"), stage, epoch, epochs, metrics, error, report."""
        return self.call("PATCH", f"/v1/runs/{run_id}", json=changes, repeatable=True)

    def cancel_run(self, run_id: str, *, reason: str = "") -> dict[str, Any]:
        return self.call("POST", f"/v1/runs/{run_id}/cancel", json={"reason": reason})

    def append_run_log(self, run_id: str, lines: Sequence[str]) -> int:
        """Add lines to the run's log; the number of its last line."""
        return int(self.request("POST", f"/v1/runs/{run_id}/logs", json={"lines": list(lines)}).json()["next"])

    def run_log(self, run_id: str, *, after: int = 0, tail: int | None = None) -> dict[str, Any]:
        """`lines` after line `after`, or the last `tail` lines; `next` to follow on."""
        params: dict[str, Any] = {"after": after} if tail is None else {"tail": tail}
        return self.get_object(f"/v1/runs/{run_id}/logs", params=params)

    def reserve_version(self, run_id: str) -> int:
        """The version number the run will register under; the same number on every call."""
        return int(self.request("POST", f"/v1/runs/{run_id}/reserve-version", repeatable=True).json()["version"])


class ScoringClient(ServiceClient):
    service = "scoring"

    def predict(self, image: bytes, *, filename: str = "image", model: str | None = None) -> dict[str, Any]:
        """The default model's answer, or the answer of `model` (one of those GET /v1/models lists)."""
        path = f"/v1/models/{model}/predict" if model else "/v1/predict"
        return self.call("POST", path,
                         files={"file": (filename, image, "application/octet-stream")})
