"""Model versions and aliases.

A model is a named series of immutable, numbered versions. Deploying means moving an
alias (for example `production`) to a version; the scoring service follows the alias.

Storage layout:
- `models` collection, partition `<model>`: one document per model holding the last
  version number handed out; numbers are taken with an etag-guarded increment, so two
  concurrent registrations never get the same number.
- `model_versions` collection, partition `<model>`, id `<version>`.
- `model_aliases` collection, partition `<model>`, id `<alias>`: each alias is its own
  document so watching one alias is one small read with its own etag.
- `alias_history` collection: every move of an alias (see `aliases.py`).
- `training_runs` collection (see `runs.py`).
- blobs `models/<model>/<version>/model.onnx`, optional variants such as
  `.../model.int8.onnx`, and `.../metadata.json` (`visiondock.blob_keys`).

A version's number is taken before its files are written (by the registration, or
earlier by the training run that registers it); if anything fails the number stays
unused, so version numbers may have gaps but never point at half a version.

An alias never points at a deleted version, whatever the timing: deleting a version first marks
it (`deleting_at`), then looks for aliases pointing at it, then deletes it; moving an alias first
writes the alias, then reads the version again and undoes the move if it is gone or marked.
Each side writes before it reads what the other writes, so of a move and a delete racing on one
version at least one sees the other and gives way (409); both may.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO

from visiondock.blob_keys import (
    MODEL_FILE,
    MODEL_PREFIX,
    artifact_key,
    label_issues_key,
    metadata_key,
    variant_filename,
    version_of_blob,
)
from visiondock.errors import Conflict, InvalidInput, NotFound, TooLarge
from visiondock.fsck import Pairing
from visiondock.storage import (
    BlobExistsError,
    BlobNotFoundError,
    BlobStore,
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    PreconditionFailedError,
    Query,
)
from visiondock.timeutil import utc_now
from visiondock.vocabulary import VARIANTS

from .aliases import ALIASES, AliasBook
from .queries import version_query
from .runs import DEFAULT_LOST_AFTER_S, TrainingRuns

MODELS = "models"
VERSIONS = "model_versions"
MAX_ARTIFACT_BYTES = 2 * 1024**3
_COPY_CHUNK = 1 << 20
# A deletion's mark on a version; older than this, it is a deletion that crashed (aliases may move there).
DELETION_MARK_TTL = timedelta(minutes=10)

log = logging.getLogger(__name__)


# For `visiondock fsck`: a version whose file is missing needs a person (an alias may point at it).
VERSION_BLOBS = Pairing("model versions", VERSIONS, MODEL_PREFIX,
                        lambda doc: artifact_key(doc.partition_key, int(doc.id)), version_of_blob,
                        delete_documents_without_blob=False)


class ModelCatalog:
    """The models with their versions, files and aliases, and the training runs that make versions."""

    def __init__(self, documents: DocumentStore, blobs: BlobStore, *,
                 run_lost_after: float = DEFAULT_LOST_AFTER_S) -> None:
        self.documents = documents
        self.blobs = blobs
        self.runs = TrainingRuns(documents, self._next_version, lost_after=run_lost_after)
        self.aliases = AliasBook(documents)

    # -- models --------------------------------------------------------------------
    def _model_doc(self, model: str) -> Document:
        try:
            return self.documents.get(MODELS, model, partition_key=model)
        except DocumentNotFoundError:
            raise NotFound(f"model {model!r} does not exist") from None

    def _next_version(self, model: str) -> int:
        now = utc_now()
        with contextlib.suppress(DocumentExistsError):  # the model's first version creates it
            self.documents.create(MODELS, {"id": model, "name": model, "latest_version": 0, "created_at": now,
                                           "updated_at": now}, partition_key=model)
        while True:
            current = self.documents.get(MODELS, model, partition_key=model)
            number = int(current.data["latest_version"]) + 1
            try:
                self.documents.patch(MODELS, model, partition_key=model, if_match=current.etag,
                                     set_fields={"latest_version": number, "updated_at": utc_now()})
                return number
            except PreconditionFailedError:
                continue  # another registration took this number; take the next

    def get_model(self, model: str) -> dict[str, Any]:
        doc = self._model_doc(model)
        return {**self._summary(doc.data), "aliases": self._alias_map(model)}

    def list_models(self, *, limit: int, continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        page = self.documents.query(MODELS, Query(order_by="created_at"), limit=limit, continuation=continuation)
        items = [{**self._summary(doc.data), "aliases": self._alias_map(doc.id)} for doc in page.items]
        return items, page.continuation

    @staticmethod
    def _summary(data: dict[str, Any]) -> dict[str, Any]:
        return {k: data[k] for k in ("name", "latest_version", "created_at", "updated_at")}

    # -- versions ------------------------------------------------------------------
    def register(self, model: str, artifact: BinaryIO, metadata: dict[str, Any], *,
                 variants: Mapping[str, BinaryIO] | None = None,
                 variant_metrics: Mapping[str, dict[str, Any]] | None = None,
                 label_issues: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Store an ONNX file, its variants and its metadata as the model's next version; with
        `label_issues`, the trainer's list of likely label errors beside them (`label-issues.json`).

        With `metadata["run_id"]` the version takes the number the run reserved (or the
        next one), and the run becomes `succeeded`; a finished run registers nothing.
        """
        variants = dict(variants or {})
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            raise InvalidInput(f"unknown model variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
        run_id = metadata.get("run_id")
        with ExitStack() as stack:
            files: dict[str | None, tuple[IO[bytes], str, int]] = {None: _spool(artifact, stack, "the model file")}
            for name, stream in variants.items():
                files[name] = _spool(stream, stack, f"the {name} model file")
            reserved = self.runs.version_for_registration(run_id, model) if run_id else None
            version = reserved if reserved is not None else self._next_version(model)
            infos: dict[str | None, dict[str, Any]] = {
                name: {"key": artifact_key(model, version, name), "sha256": digest, "size": size}
                for name, (_, digest, size) in files.items()}
            document = {
                **metadata,
                "id": str(version),
                "model": model,
                "version": version,
                "created_at": utc_now(),
                "artifact": infos[None],
                "variants": {name: {**dict((variant_metrics or {}).get(name, {})), **infos[name]}
                             for name in variants},
            }
            written: list[str] = []
            try:
                for variant, (spool, _, _) in files.items():
                    self.blobs.put(infos[variant]["key"], spool, content_type="application/octet-stream",
                                   overwrite=False)
                    written.append(infos[variant]["key"])
                self.blobs.put(metadata_key(model, version), json.dumps(document, indent=2).encode(),
                               content_type="application/json", overwrite=False)
                written.append(metadata_key(model, version))
                if label_issues is not None:
                    self.blobs.put(label_issues_key(model, version),
                                   json.dumps([dict(item) for item in label_issues]).encode(),
                                   content_type="application/json", overwrite=False)
                    written.append(label_issues_key(model, version))
                stored = self.documents.create(VERSIONS, document, partition_key=model)
            except BaseException as exc:
                for key in written:
                    try:
                        self.blobs.delete(key)
                    except Exception:  # report the original failure, not the cleanup's
                        log.warning("could not remove %s after a failed registration", key)
                if isinstance(exc, DocumentExistsError | BlobExistsError):
                    raise Conflict(f"model {model!r} already has a version {version}; training run "
                                   f"{run_id!r} registered it before") from None
                raise
        if run_id:
            self.runs.mark_registered(run_id, version)
        log.info("registered %s version %d (%d bytes, variants: %s)", model, version, infos[None]["size"],
                 ", ".join(variants) or "none")
        return stored.data

    def get_version(self, model: str, version: int) -> dict[str, Any]:
        try:
            return self.documents.get(VERSIONS, str(version), partition_key=model).data
        except DocumentNotFoundError:
            self._model_doc(model)
            raise NotFound(f"model {model!r} has no version {version}") from None

    def list_versions(self, model: str, *, limit: int, continuation: str | None, order_by: str = "version",
                      descending: bool = True, where: Sequence[str] = ()) -> tuple[list[dict[str, Any]], str | None]:
        """Versions newest first, or ordered by a field such as `metrics.accuracy` and filtered
        (`queries.py`); versions without the ordering field are left out."""
        query = version_query(model, order_by=order_by, descending=descending, where=where)
        self._model_doc(model)
        page = self.documents.query(VERSIONS, query, limit=limit, continuation=continuation)
        return [doc.data for doc in page.items], page.continuation

    @staticmethod
    def _being_deleted(data: dict[str, Any]) -> bool:
        marked = data.get("deleting_at")
        return isinstance(marked, str) and bool(marked) and \
            datetime.now(UTC) - datetime.fromisoformat(marked) < DELETION_MARK_TTL

    def delete_version(self, model: str, version: int) -> None:
        """Remove a version and its files; refused while an alias points at it. The version is marked
        before the aliases are read (see the module docstring)."""
        while True:
            try:
                doc = self.documents.get(VERSIONS, str(version), partition_key=model)
            except DocumentNotFoundError:
                self.get_version(model, version)  # the 404 that says what is missing
                raise
            try:
                marked = self.documents.patch(VERSIONS, str(version), partition_key=model, if_match=doc.etag,
                                              set_fields={"deleting_at": utc_now()})
                break
            except PreconditionFailedError:
                continue
        found = marked.data
        pointing = sorted(alias for alias, target in self._alias_map(model).items() if target == version)
        if pointing:
            with contextlib.suppress(PreconditionFailedError, DocumentNotFoundError):
                self.documents.patch(VERSIONS, str(version), partition_key=model, if_match=marked.etag,
                                     remove_fields=["deleting_at"])
            raise Conflict(f"model {model!r} version {version} is what alias(es) {', '.join(pointing)} point at; "
                           f"move them first", code="version_in_use")
        # The document goes first: from then on nobody can resolve the version, so removing its
        # files cannot break a reader; a file left behind by a crash is unreachable, not half a version.
        self.documents.delete(VERSIONS, str(version), partition_key=model)
        keys = [found["artifact"]["key"], *(v["key"] for v in found.get("variants", {}).values()),
                metadata_key(model, version), label_issues_key(model, version)]
        for key in keys:
            with contextlib.suppress(BlobNotFoundError):
                self.blobs.delete(key)
        log.info("deleted %s version %d and %d files", model, version, len(keys))

    def label_issues(self, model: str, version: int, *, limit: int | None = None) -> dict[str, Any]:
        """The likely label errors the trainer listed for a version, most likely first."""
        found = self.get_version(model, version)
        try:
            items = json.loads(self.blobs.get(label_issues_key(model, version)))
        except BlobNotFoundError:
            raise NotFound(f"model {model!r} version {version} has no list of label issues: only classifiers "
                           "trained with cross-validation have one") from None
        summary = found.get("metrics", {}).get("label_issues", {})
        return {"model": model, "version": version, "project_id": found.get("project_id"),
                "threshold": summary.get("threshold"), "checked": summary.get("checked"), "count": len(items),
                "items": items[:limit] if limit is not None else items}

    def artifact(self, model: str, version: int, filename: str = MODEL_FILE) -> tuple[Iterator[bytes], dict[str, Any]]:
        """The stream and checksum of a version's file: `model.onnx` or a variant's `model.<variant>.onnx`."""
        found = self.get_version(model, version)
        if filename == MODEL_FILE:
            info = found["artifact"]
        else:
            by_file = {variant_filename(name): value for name, value in found.get("variants", {}).items()}
            if filename not in by_file:
                have = ", ".join([MODEL_FILE, *sorted(by_file)])
                raise NotFound(f"model {model!r} version {version} has no file {filename!r}; it has {have}")
            info = by_file[filename]
        return self.blobs.stream(info["key"]), info

    # -- aliases -------------------------------------------------------------------
    def set_alias(self, model: str, alias: str, version: int, *, actor: str, reason: str = "",
                  if_match: str | None = None, action: str = "move") -> dict[str, Any]:
        """Point an alias at a version, recording who moved it from where (see `aliases.py`); undone
        when the version turns out deleted, or being deleted, once the alias is written."""

        def still_there() -> None:
            try:
                current = self.documents.get(VERSIONS, str(version), partition_key=model).data
            except DocumentNotFoundError:
                raise Conflict(f"model {model!r} version {version} was deleted while {alias!r} moved to it",
                               code="version_deleted") from None
            if self._being_deleted(current):
                raise Conflict(f"model {model!r} version {version} is being deleted", code="version_deleted")

        still_there_now = self.get_version(model, version)
        if self._being_deleted(still_there_now):
            raise Conflict(f"model {model!r} version {version} is being deleted", code="version_deleted")
        moved = self.aliases.move(model, alias, version, actor=actor, reason=reason, if_match=if_match,
                                  action=action, confirm=still_there)
        return {**moved["alias"], "previous_version": moved["history"]["from_version"]}

    def rollback_alias(self, model: str, alias: str, *, actor: str, reason: str = "",
                       if_match: str | None = None) -> dict[str, Any]:
        """Move an alias back to the version it pointed at before its last move."""
        self.get_alias(model, alias)
        if if_match is not None:  # a stale etag is refused before anything else is said
            self.aliases.check_precondition(model, alias, self.aliases.current(model, alias), if_match)
        target = self.aliases.rollback_target(model, alias)
        try:
            self.get_version(model, target)
        except NotFound:
            raise Conflict(f"alias {model}@{alias} pointed at version {target} before, but that version was "
                           f"deleted", code="previous_version_deleted") from None
        return self.set_alias(model, alias, target, actor=actor, reason=reason, if_match=if_match,
                              action="rollback")

    def get_alias(self, model: str, alias: str) -> dict[str, Any]:
        try:
            doc = self.documents.get(ALIASES, alias, partition_key=model)
        except DocumentNotFoundError:
            self._model_doc(model)
            raise NotFound(f"model {model!r} has no alias {alias!r}; set it with "
                           f"PUT /v1/models/{model}/aliases/{alias}") from None
        return {**doc.data, "etag": doc.etag}

    def resolve_alias(self, model: str, alias: str) -> dict[str, Any]:
        target = self.get_alias(model, alias)
        version = self.get_version(model, target["version"])
        return {**target, "model_version": version,
                "artifact_url": f"/v1/models/{model}/versions/{version['version']}/artifacts/model.onnx"}

    def delete_alias(self, model: str, alias: str, *, actor: str, reason: str = "",
                     if_match: str | None = None) -> None:
        self.get_alias(model, alias)
        self.aliases.move(model, alias, None, actor=actor, reason=reason, if_match=if_match, action="delete")

    def alias_history(self, model: str, alias: str, *, limit: int,
                      continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        self._model_doc(model)
        return self.aliases.history(model, alias, limit=limit, continuation=continuation)

    def list_aliases(self, model: str) -> list[dict[str, Any]]:
        self._model_doc(model)
        return [doc.data for doc in self.documents.query_all(ALIASES, Query(partition_key=model))]

    def _alias_map(self, model: str) -> dict[str, int]:
        return {doc.data["alias"]: doc.data["version"]
                for doc in self.documents.query_all(ALIASES, Query(partition_key=model))}


def _spool(stream: IO[bytes], stack: ExitStack, what: str) -> tuple[IO[bytes], str, int]:
    """Copy an upload to a temporary file, checking its size; (file, sha256, size)."""
    spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=64 * 1024**2))  # noqa: SIM115 - closed by the stack
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(_COPY_CHUNK):
        size += len(chunk)
        if size > MAX_ARTIFACT_BYTES:
            raise TooLarge(f"{what} is over the {MAX_ARTIFACT_BYTES:,}-byte limit")
        digest.update(chunk)
        spool.write(chunk)
    if size == 0:
        raise InvalidInput(f"{what} is empty")
    spool.seek(0)
    return spool, digest.hexdigest(), size
