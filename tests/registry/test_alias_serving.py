"""After a promotion the registry asks the scoring service to load the new version now and says when it
serves: real registry and scoring processes, the scoring service polling its alias only once a minute, so
an answer within seconds shows the registry's request did it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cli.local_services import LocalServices, free_port
from services.registry.serving import ScoringWatch
from tests.scoring import tiny_models
from tests.support.stack import running_services
from visiondock.auth import new_key
from visiondock.clients import RegistryClient, ServiceError
from visiondock.settings import LOCAL_DEV_API_KEY

pytestmark = pytest.mark.e2e
MODEL = "served-later"
PREDICT_KEY, PREDICT_ENTRY = new_key("scorer", ["predict"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    env = {"VISIONDOCK_SCORING_POLL_SECONDS": "60", "VISIONDOCK_API_KEY_ENTRIES": PREDICT_ENTRY}
    with running_services(tmp_path_factory.mktemp("alias-serving"), scoring_model=MODEL, env=env) as services:
        yield services


def _serving(registry: RegistryClient, alias: str, wait: float) -> dict:
    return registry.get_json(f"/v1/models/{MODEL}/aliases/{alias}/serving", params={"wait": wait})


def test_a_promotion_serves_within_seconds_and_says_since_when(stack: LocalServices, tmp_path: Path) -> None:
    with RegistryClient(stack.url("registry"), LOCAL_DEV_API_KEY) as registry:
        first = registry.register_version(MODEL, tiny_models.classifier(tmp_path / "1.onnx"),
                                          {"task": "multiclass", "labels": tiny_models.COLOURS})["version"]
        registry.set_alias(MODEL, "production", first)
        started = time.monotonic()
        state = _serving(registry, "production", wait=20)
        assert state["serving"] is True and state["served_version"] == first, state
        assert time.monotonic() - started < 20  # not the scoring service's own poll, a minute away
        assert datetime.fromisoformat(state["since"]).tzinfo is not None
        assert state["detail"] == f"version {first} serves {MODEL}@production"

        second = registry.register_version(MODEL, tiny_models.classifier(tmp_path / "2.onnx", gain=5.0),
                                           {"task": "multiclass", "labels": tiny_models.COLOURS})["version"]
        registry.set_alias(MODEL, "production", second)
        # Without waiting: what serves now, in words.
        now = _serving(registry, "production", wait=0)
        assert (now["serving"], now["served_version"], now["state"]) == (False, first, "loading")
        assert f"still serves version {first}" in now["detail"]
        after = _serving(registry, "production", wait=20)
        assert (after["serving"], after["served_version"]) == (True, second), after

        # A key that may not ask for a refresh (no `train` role): the version waits for the service's own poll,
        # and the answer says why.
        third = registry.register_version(MODEL, tiny_models.classifier(tmp_path / "3.onnx", gain=7.0),
                                          {"task": "multiclass", "labels": tiny_models.COLOURS})["version"]
        registry.set_alias(MODEL, "production", third)
        waiting = ScoringWatch(stack.url("scoring"), PREDICT_KEY, poll_seconds=0.2).serving(
            MODEL, "production", third, wait=1)
        assert (waiting["serving"], waiting["state"], waiting["served_version"]) == (False, "loading", second)
        assert "refused the registry's POST /v1/model/refresh" in waiting["detail"]
        assert "VISIONDOCK_SCORING_POLL_SECONDS" in waiting["detail"]
        assert _serving(registry, "production", wait=20)["served_version"] == third

        # An alias the scoring service does not follow: said at once, with what it does serve.
        registry.set_alias(MODEL, "staging", first)
        other = _serving(registry, "staging", wait=5)
        assert other["state"] == "not_served" and f"{MODEL}@production" in other["detail"]

    # Asking needs a train key: the registry's request to the scoring service is made with its own key.
    with RegistryClient(stack.url("registry"), PREDICT_KEY) as scorer, \
            pytest.raises(ServiceError, match="403 the key 'scorer' lacks the role this needs: train"):
        scorer.get_json(f"/v1/models/{MODEL}/aliases/production/serving")


def test_a_scoring_service_that_does_not_answer_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    state = ScoringWatch(url, LOCAL_DEV_API_KEY, timeout=2).serving(MODEL, "production", 3, wait=1)
    assert (state["serving"], state["state"]) == (False, "unreachable")
    assert url in state["detail"] and "next poll" in state["detail"]
