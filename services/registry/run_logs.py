"""A training run's log: lines the trainer posts while it runs, read back by tail or followed.

Storage: collection `run_logs`, partition `<run id>`, one document per posted batch with id
`<sequence>` (zero-padded) holding its lines and the number of its first line. Creating the
batch's document claims its sequence number, so concurrent posts never share line numbers.
Lines are numbered from 1; a reader follows by asking for the lines after the last it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from visiondock.storage import DocumentExistsError, DocumentStore, Filter, Query
from visiondock.timeutil import utc_now

RUN_LOGS = "run_logs"
MAX_LINE_CHARS = 2000


class RunLogs:
    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    def _last_batch(self, run_id: str) -> dict[str, Any] | None:
        page = self.documents.query(RUN_LOGS, Query(partition_key=run_id, order_by="sequence", descending=True),
                                    limit=1)
        return page.items[0].data if page.items else None

    def append(self, run_id: str, lines: Sequence[str]) -> int:
        """Store lines (each cut to MAX_LINE_CHARS); the number of the run's last line."""
        texts = [line[:MAX_LINE_CHARS] for line in lines]
        while True:
            last = self._last_batch(run_id)
            sequence = last["sequence"] + 1 if last else 1
            first = last["first_line"] + len(last["lines"]) if last else 1
            try:
                batch = {"id": f"{sequence:010d}", "sequence": sequence, "first_line": first,
                         "last_line": first + len(texts) - 1, "lines": texts, "posted_at": utc_now()}
                self.documents.create(RUN_LOGS, batch, partition_key=run_id)
                return first + len(texts) - 1
            except DocumentExistsError:
                continue  # another post took this batch number; go after it

    def read(self, run_id: str, *, after: int = 0, tail: int | None = None,
             limit: int = 1000) -> dict[str, Any]:
        """Lines numbered above `after` (at most `limit`), or the last `tail` lines;
        `next` is what to pass as `after` to follow the log."""
        if tail is not None:
            lines: list[dict[str, Any]] = []
            query = Query(partition_key=run_id, order_by="sequence", descending=True)
            for doc in self.documents.query_all(RUN_LOGS, query, page_size=50):
                batch = doc.data
                lines[:0] = [{"n": batch["first_line"] + i, "text": t} for i, t in enumerate(batch["lines"])]
                if len(lines) >= tail:
                    break
            lines = lines[-tail:] if tail else []
        else:
            query = Query(partition_key=run_id, filters=(Filter("last_line", "gt", after),), order_by="sequence")
            lines = []
            for doc in self.documents.query_all(RUN_LOGS, query, page_size=50):
                batch = doc.data
                lines += [{"n": batch["first_line"] + i, "text": t} for i, t in enumerate(batch["lines"])
                          if batch["first_line"] + i > after]
                if len(lines) >= limit:
                    break
            lines = lines[:limit]
        last = self._last_batch(run_id)
        total = last["first_line"] + len(last["lines"]) - 1 if last else 0
        following = lines[-1]["n"] if lines else total if tail is not None else after
        return {"lines": lines, "next": following, "total": total}
