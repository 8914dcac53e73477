"""Whether the scoring service serves an alias's version yet, and since when.

A promotion moves an alias in the registry at once; the scoring service loads the new
version at its next poll (VISIONDOCK_SCORING_POLL_SECONDS) or when told to check now. So
right after a promotion `ScoringWatch.serving` asks it to check now (`POST /v1/model/refresh`,
with the registry's own key; a key without the `train` role may not, and then the poll does it),
then reads what it serves (`GET /v1/models`, and `GET /v1/model`
for the aliases of its default model) until the alias's version serves or `wait` seconds
pass, and says which in words a person reads: "serving since ...", or why not yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from visiondock.auth import API_KEY_HEADER

POLL_SECONDS = 0.5
MAX_WAIT_SECONDS = 60.0


class ScoringUnreachable(Exception):
    """The scoring service did not answer, or refused the registry's key."""


class ScoringWatch:
    def __init__(self, scoring_url: str, api_key: str, *, timeout: float = 10.0,
                 client: Callable[[], httpx.Client] | None = None, poll_seconds: float = POLL_SECONDS) -> None:
        self.scoring_url = scoring_url.rstrip("/")
        self.api_key = api_key
        self.poll_seconds = poll_seconds
        self._client = client or (lambda: httpx.Client(base_url=self.scoring_url, timeout=timeout,
                                                       headers={API_KEY_HEADER: api_key}))

    def serving(self, model: str, alias: str, version: int, *, wait: float = 0.0) -> dict[str, Any]:
        """What the scoring service serves for `model` at `alias`, against the alias's `version`: at once
        when it serves it already, else after asking it to check now and waiting up to `wait` seconds."""
        answer = {"model": model, "alias": alias, "version": version}
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_SECONDS)
        refused = None
        try:
            with self._client() as http:
                seen = self._observe(http, model, alias)
                if not _serves(seen, version) and wait > 0:
                    try:
                        self._request(http, "POST", "/v1/model/refresh")
                    except ScoringUnreachable as exc:
                        # A key without `train` may not ask: the service's own poll still finds the version.
                        refused = str(exc)
                    seen = self._observe(http, model, alias)
                    while not _serves(seen, version) and time.monotonic() < deadline and (
                            refused is not None or "absent" not in seen):
                        time.sleep(self.poll_seconds)
                        seen = self._observe(http, model, alias)
        except ScoringUnreachable as exc:
            return {**answer, "serving": False, "served_version": None, "since": None, "state": "unreachable",
                    "detail": str(exc)}
        verdict = _verdict(seen, model, alias, version)
        if refused is not None and not verdict["serving"]:
            verdict["detail"] += f" ({refused})"
        return {**answer, **verdict}

    def _observe(self, http: httpx.Client, model: str, alias: str) -> dict[str, Any]:
        """The scoring service's status of `model` at `alias`, or {"absent": what it serves instead}."""
        listing = self._request(http, "GET", "/v1/models")
        entry: dict[str, Any] | None = next((m for m in listing.get("models") or [] if m.get("name") == model), None)
        if entry is None:
            served = [f"{m['name']}@{m.get('slot')}" for m in listing.get("models") or [] if m.get("name")]
            return {"absent": ", ".join(served) or "no model yet"}
        if entry.get("slot") == alias:
            return entry
        if entry.get("primary"):  # the default model's other aliases are its slots
            slot: dict[str, Any] | None = (self._request(http, "GET", "/v1/model").get("slots") or {}).get(alias)
            if slot is not None:
                return slot
        return {"absent": f"{model}@{entry.get('slot')}"}

    def _request(self, http: httpx.Client, method: str, path: str) -> dict[str, Any]:
        try:
            response = http.request(method, path)
        except httpx.HTTPError as exc:
            raise ScoringUnreachable(f"the registry cannot reach the scoring service at {self.scoring_url} "
                                     f"({exc.__class__.__name__}); it loads the version at its next poll once "
                                     "it runs (VISIONDOCK_SCORING_URL)") from None
        if response.status_code != 200:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise ScoringUnreachable(f"the scoring service refused the registry's {method} {path}: {detail} "
                                     f"(HTTP {response.status_code}); it loads the version at its next poll "
                                     "(VISIONDOCK_SCORING_POLL_SECONDS)")
        body: dict[str, Any] = response.json()
        return body


def _served_version(seen: dict[str, Any]) -> int | None:
    loaded = seen.get("model") or {}
    version = loaded.get("version")
    return int(version) if isinstance(version, int) else None


def _serves(seen: dict[str, Any], version: int) -> bool:
    return _served_version(seen) == version


def _since(seen: dict[str, Any]) -> str | None:
    loaded_at = (seen.get("model") or {}).get("loaded_at")
    if not isinstance(loaded_at, int | float):
        return None
    return datetime.fromtimestamp(loaded_at, UTC).isoformat()


def _verdict(seen: dict[str, Any], model: str, alias: str, version: int) -> dict[str, Any]:
    served = _served_version(seen)
    if "absent" in seen:
        return {"serving": False, "served_version": None, "since": None, "state": "not_served",
                "detail": f"the scoring service does not serve {model}@{alias} (it serves {seen['absent']}); "
                          f"add it to VISIONDOCK_SCORING_MODELS, or serve every {alias} model with "
                          f"`*@{alias}`"}
    if served == version:
        return {"serving": True, "served_version": served, "since": _since(seen), "state": "serving",
                "detail": f"version {version} serves {model}@{alias}"}
    why = seen.get("error")
    if served is None:
        detail = f"version {version} is not loaded yet" + (f": {why}" if why else f" ({seen.get('state')})")
    else:
        detail = f"the scoring service still serves version {served}" + (f": {why}" if why else
                                                                         "; it loads the new one at its next poll")
    return {"serving": False, "served_version": served, "since": _since(seen) if served is not None else None,
            "state": "loading" if not why else "failed", "detail": detail}
