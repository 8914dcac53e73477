"""Audited aliases: every move of an alias is recorded, and a move may be made conditional.

Storage: collection `alias_history`, partition `<model>`, one document per move with id
`<alias>.<sequence>` (the sequence zero-padded, so ids also sort in order). The history
entry is created *before* the alias document is written: creating it claims the next
sequence number, so of two concurrent moves of one alias exactly one wins that number;
the loser retries, or with `If-Match` gets a 412 because the alias changed under it.
If the alias write then fails, the entry is removed again, so the history never records
a move that did not happen (its sequence number stays unused: numbers may have gaps).

A rollback moves the alias to the version it pointed at before the current one; a
second rollback goes one move further back (rollbacks undo moves, like an undo stack).

A move may be confirmed after the alias is written (`confirm`: the catalog checks that its version
is still there and not being deleted); when the confirmation fails the move is undone (the alias
put back as it was, the history entry removed) and its error raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from visiondock.errors import Conflict, NotFound, Outdated
from visiondock.storage import (
    Document,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentStore,
    Filter,
    PreconditionFailedError,
    Query,
)
from visiondock.timeutil import utc_now

ALIASES = "model_aliases"
HISTORY = "alias_history"

log = logging.getLogger(__name__)


def quoted(etag: str) -> str:
    """An HTTP entity tag: the stores' etags come quoted already (as Cosmos DB's do) or bare."""
    return etag if etag.startswith('"') else f'"{etag}"'


def etag_matches(if_match: str, etag: str) -> bool:
    """Does an `If-Match` header (a list of tags, or `*`) accept the stored etag?"""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or quoted(etag) in {quoted(tag.removeprefix("W/")) for tag in tags if tag}


def _history_id(alias: str, sequence: int) -> str:
    return f"{alias}.{sequence:010d}"


class AliasBook:
    """Moves, deletes and rolls back a model's aliases, keeping the history of every change."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    def current(self, model: str, alias: str) -> Document | None:
        try:
            return self.documents.get(ALIASES, alias, partition_key=model)
        except DocumentNotFoundError:
            return None

    def history(self, model: str, alias: str, *, limit: int,
                continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """The alias's moves, newest first."""
        page = self.documents.query(HISTORY, self._history_query(model, alias), limit=limit,
                                    continuation=continuation)
        return [doc.data for doc in page.items], page.continuation

    @staticmethod
    def _history_query(model: str, alias: str) -> Query:
        return Query(partition_key=model, filters=(Filter("alias", "eq", alias),), order_by="sequence",
                     descending=True)

    def _last_sequence(self, model: str, alias: str) -> int:
        page = self.documents.query(HISTORY, self._history_query(model, alias), limit=1)
        return int(page.items[0].data["sequence"]) if page.items else 0

    def move(self, model: str, alias: str, version: int | None, *, actor: str, reason: str = "",
             if_match: str | None = None, action: str = "move",
             confirm: Callable[[], None] | None = None) -> dict[str, Any]:
        """Point the alias at `version` (None deletes it), recording the move.

        With `if_match` the alias must still have that etag (412 otherwise); without it the
        move retries until it is recorded after whatever moved the alias concurrently. `confirm`
        runs once the alias is written; if it raises, the move is undone and its error raised.
        """
        while True:
            current = self.current(model, alias)
            if if_match is not None:
                self.check_precondition(model, alias, current, if_match)
            if version is None and current is None:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            now = utc_now()
            sequence = self._last_sequence(model, alias) + 1
            entry: dict[str, Any] = {
                "id": _history_id(alias, sequence), "model": model, "alias": alias, "sequence": sequence,
                "action": action, "from_version": current.data["version"] if current else None,
                "to_version": version, "actor": actor, "reason": reason, "moved_at": now}
            try:
                self.documents.create(HISTORY, entry, partition_key=model)
            except DocumentExistsError:
                if if_match is not None:
                    raise Outdated(f"alias {model}@{alias} was moved by someone else just now; read "
                                             f"it again and retry") from None
                continue  # another move took this sequence number: read again and go after it
            try:
                stored = self._write_alias(model, alias, version, current, now)
            except (PreconditionFailedError, DocumentExistsError, DocumentNotFoundError):
                self._forget(model, entry["id"])
                if if_match is not None:
                    raise Outdated(f"alias {model}@{alias} was changed by someone else just now; "
                                             f"read it again and retry") from None
                continue
            except BaseException:
                self._forget(model, entry["id"])
                raise
            if confirm is not None:
                try:
                    confirm()
                except BaseException:
                    self._undo(model, alias, stored, current)
                    self._forget(model, entry["id"])
                    raise
            log.info("alias %s@%s: %s -> %s by %s", model, alias, entry["from_version"], version, actor)
            return {"alias": stored, "history": entry}

    def _undo(self, model: str, alias: str, written: dict[str, Any] | None, before: Document | None) -> None:
        """Put the alias back as it was before a move wrote `written`, unless it has moved again since
        (that move confirmed its own version)."""
        assert written is not None
        try:
            if before is None:
                self.documents.delete(ALIASES, alias, partition_key=model, if_match=written["etag"])
            else:
                self.documents.put(ALIASES, before.data, partition_key=model, if_match=written["etag"])
        except (PreconditionFailedError, DocumentNotFoundError):
            log.info("alias %s@%s moved again before an unconfirmed move was undone; left as it is", model, alias)

    def rollback_target(self, model: str, alias: str) -> int:
        """The version a rollback moves the alias to: before the last move not undone yet."""
        undone = 0
        for doc in self.documents.query_all(HISTORY, self._history_query(model, alias), page_size=100):
            entry = doc.data
            if entry["action"] == "rollback":
                undone += 1
            elif undone:
                undone -= 1
            else:
                if entry["from_version"] is None:
                    break
                return int(entry["from_version"])
        raise Conflict(f"alias {model}@{alias} has no earlier version to roll back to", code="no_previous_version")

    def check_precondition(self, model: str, alias: str, current: Document | None, if_match: str) -> None:
        if current is None:
            raise Outdated(f"alias {model}@{alias} does not exist, so no If-Match etag can match it")
        if not etag_matches(if_match, current.etag):
            raise Outdated(f"alias {model}@{alias} has changed: its etag is {quoted(current.etag)}, "
                                     f"not {if_match}; read it again and retry")

    def _write_alias(self, model: str, alias: str, version: int | None, current: Document | None,
                     now: str) -> dict[str, Any] | None:
        if version is None:
            assert current is not None
            self.documents.delete(ALIASES, alias, partition_key=model, if_match=current.etag)
            return None
        doc = {"id": alias, "model": model, "alias": alias, "version": version, "updated_at": now}
        if current is None:
            stored = self.documents.create(ALIASES, doc, partition_key=model)
        else:
            stored = self.documents.put(ALIASES, doc, partition_key=model, if_match=current.etag)
        return {**stored.data, "etag": stored.etag}

    def _forget(self, model: str, entry_id: str) -> None:
        with contextlib.suppress(DocumentNotFoundError):
            self.documents.delete(HISTORY, entry_id, partition_key=model)
