"""The alias follower, discovery and the poll loop, against the real registry app in process."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cli.local_services import free_port
from services.scoring.follower import AliasDiscovery, AliasFollower, ModelMissing, PollLoop
from services.scoring.targets import ServedTarget
from visiondock.clients import RegistryClient, ServiceUnavailableError
from visiondock.settings import LOCAL_DEV_API_KEY

from . import tiny_models
from .conftest import register


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_an_alias_is_answered_again_only_when_it_moved_or_was_not_settled(registry_in_process: RegistryClient,
                                                                          tmp_path: Path) -> None:
    registry = registry_in_process
    follower = AliasFollower(registry, ServedTarget("colours", "production"), clock=FakeClock())
    with pytest.raises(ModelMissing, match="no alias 'production' of model 'colours' yet"):
        follower.check()
    assert follower.reachable is True  # the registry answered: the alias does not exist

    first = register(registry, "colours", tiny_models.classifier(tmp_path / "v1.onnx"), alias="production")
    assert follower.check()["version"] == first
    follower.settle()
    assert follower.check() is None  # 304: unchanged
    assert follower.last_success == follower.last_check

    second = register(registry, "colours", tiny_models.classifier(tmp_path / "v2.onnx", gain=12), alias="production")
    assert follower.check()["version"] == second
    # Not settled (as when the new version failed to load): asked again, answered again.
    assert follower.check()["version"] == second
    follower.settle()
    assert follower.check() is None
    follower.forget()  # unloaded: the next check answers the served version again
    assert follower.check()["version"] == second


def test_a_pinned_version_is_read_once(registry_in_process: RegistryClient, tmp_path: Path) -> None:
    version = register(registry_in_process, "colours", tiny_models.classifier(tmp_path / "v1.onnx"))
    follower = AliasFollower(registry_in_process, ServedTarget("colours", version=version))
    assert follower.check()["version"] == version
    follower.settle()
    assert follower.check() is None
    with pytest.raises(ModelMissing, match="no version 9 of model 'colours'"):
        AliasFollower(registry_in_process, ServedTarget("colours", version=9)).check()


def test_an_unreachable_registry_is_told_apart_from_a_missing_alias() -> None:
    with RegistryClient(f"http://127.0.0.1:{free_port()}", LOCAL_DEV_API_KEY, retries=1, timeout=2) as closed:
        follower = AliasFollower(closed, ServedTarget("colours", "production"))
        with pytest.raises(ServiceUnavailableError):
            follower.check()
    assert follower.reachable is False and follower.last_success is None


def test_discovery_finds_every_model_with_the_alias(registry_in_process: RegistryClient, tmp_path: Path) -> None:
    discovery = AliasDiscovery(registry_in_process, ("production", "canary"))
    assert discovery.find() == [] and discovery.listed
    model = tiny_models.classifier(tmp_path / "m.onnx")
    register(registry_in_process, "shelf", model, alias="canary")
    register(registry_in_process, "flowers", model, alias="production")
    register(registry_in_process, "tags", model)  # no alias: not served
    assert discovery.find() == [ServedTarget("flowers", "production"), ServedTarget("shelf", "canary")]


def test_the_poll_loop_survives_a_failing_poll_and_answers_a_poke() -> None:
    ticks: list[int] = []
    done = threading.Event()

    def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise RuntimeError("the registry broke")
        done.set()

    loop = PollLoop(tick, interval=3600, name="test-poll")
    loop.start()
    try:
        loop.poke()
        while not ticks:
            threading.Event().wait(0.01)
        loop.poke()  # the first poll failed: the loop polls again when asked
        assert done.wait(5)
    finally:
        loop.stop()
    assert ticks == [0, 1]
