"""Whether the review queue can fill: the scoring service's prediction capture, as it says itself.

The review queue holds predictions the scoring service captured (VISIONDOCK_SCORING_CAPTURE_RATE,
a share of its predictions handed over here). An empty queue means something different when
capture is off, when it is on but the project's model is not served, and when it is on and
nothing was scored yet: the app says which, asking the scoring service over REST (`GET
/v1/model` reports `capture_rate` when capture is on, `GET /v1/models` the models it serves).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx

from visiondock.auth import API_KEY_HEADER

HOW_TO_TURN_ON = ("set VISIONDOCK_SCORING_CAPTURE_RATE on the scoring service (for example 0.05 sends 5 % of its "
                  "predictions here) and restart it")


class CaptureStatus:
    def __init__(self, *, scoring_url: str, api_key: str, timeout: float = 5.0,
                 client: Callable[[], AbstractContextManager[httpx.Client]] | None = None) -> None:
        self.scoring_url = scoring_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        # A client for one question, closed after it: over the network, or (tests) an in-process app's.
        self.client = client or (lambda: httpx.Client(base_url=self.scoring_url, timeout=self.timeout))

    def for_project(self, project_id: str) -> dict[str, Any]:
        try:
            with self.client() as http:
                headers = {API_KEY_HEADER: self.api_key}
                model = http.get("/v1/model", headers=headers)
                served = http.get("/v1/models", headers=headers)
        except httpx.HTTPError as exc:
            return self._unknown(f"the scoring service at {self.scoring_url} did not answer ({type(exc).__name__})")
        if model.status_code != 200 or served.status_code != 200:
            return self._unknown(f"the scoring service refused to say (HTTP {model.status_code})")
        rate = float(model.json().get("capture_rate") or 0.0)
        names = {m.get("name") for m in served.json().get("models") or []}
        primary = (model.json().get("model") or {}).get("name")
        return {"scoring_reachable": True, "capture_rate": rate, "model_served": project_id in names | {primary},
                "how_to_turn_on": HOW_TO_TURN_ON, "detail": None}

    @staticmethod
    def _unknown(detail: str) -> dict[str, Any]:
        return {"scoring_reachable": False, "capture_rate": None, "model_served": None,
                "how_to_turn_on": HOW_TO_TURN_ON, "detail": detail}
