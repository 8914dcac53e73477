"""The detector's training feed: each augmented view comes from its own (seed, epoch, index)
generator, so training gives the same detector whatever the number of loader workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from services.trainer.fcos import DetectorOptions, FittedDetector, fit_detector
from services.trainer.fcos import training as fcos_training
from services.trainer.fcos.augment import random_view
from services.trainer.fcos.training import AugmentedViews, view_rng
from visiondock.preprocess import PreprocessSpec

from .scenes import LABELS, negatives, scenes

# Tiny and quick: 64 px inputs, 2 epochs on 6 images (a few seconds per fit on one thread).
OPTIONS = DetectorOptions(input_size=64, epochs=2, batch_size=4, seed=11)


def test_a_view_depends_on_its_key_not_on_the_order_views_are_made_in() -> None:
    spec = PreprocessSpec(size=64, resize=64, policy="stretch")
    data = scenes(3, seed=21)
    keys = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 2)]
    forward = {key: AugmentedViews(data, spec, OPTIONS)[key] for key in keys}
    backward = {key: AugmentedViews(data, spec, OPTIONS)[key] for key in reversed(keys)}
    interleaved = AugmentedViews(data, spec, OPTIONS)  # one dataset, views made out of order and twice
    for key in [*keys[::2], *keys, *keys[1::2]]:
        pixels, view = interleaved[key]
        for other_pixels, other in (forward[key], backward[key]):
            np.testing.assert_array_equal(pixels, other_pixels)
            np.testing.assert_array_equal(view.boxes, other.boxes)
            np.testing.assert_array_equal(view.labels, other.labels)
            np.testing.assert_array_equal(view.ignore, other.ignore)
    # The view is random_view with the key's own generator...
    epoch, index = 2, 2
    expected = random_view(data[index], 64, np.random.default_rng([OPTIONS.seed, epoch, index]), OPTIONS.augment)
    np.testing.assert_array_equal(forward[(epoch, index)][1].pixels, expected.pixels)
    np.testing.assert_array_equal(view_rng(OPTIONS.seed, epoch, index).random(4),
                                  np.random.default_rng([OPTIONS.seed, epoch, index]).random(4))
    # ...so one sample's views differ from epoch to epoch, and a seed's from another seed's.
    assert not np.array_equal(forward[(1, 0)][0], forward[(2, 0)][0])
    reseeded = AugmentedViews(data, spec, DetectorOptions(input_size=64, seed=12))[(1, 0)]
    assert not np.array_equal(forward[(1, 0)][0], reseeded[0])


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # One torch thread: on a shared 2-core machine two threads per process spin against
    # other processes (and the loader's worker) and run several times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _fit(workers: int) -> FittedDetector:
    data = scenes(5, seed=31) + negatives(1, seed=32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fcos_training, "LOADER_WORKERS", workers)
        return fit_detector(data, scenes(2, seed=33), LABELS, OPTIONS, progress=False)


def _losses(fitted: FittedDetector) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if not k.endswith("seconds")} for record in fitted.history]


@pytest.fixture(scope="module")
def without_workers(one_thread: None) -> FittedDetector:
    return _fit(0)


@pytest.mark.training
@pytest.mark.parametrize("workers", [1, 2])
def test_loader_workers_change_nothing_but_speed(workers: int, without_workers: FittedDetector) -> None:
    fitted = _fit(workers)
    assert without_workers.params["loader_workers"] == 0 and fitted.params["loader_workers"] == workers
    assert fitted.params["device"] == "cpu" and len(fitted.history) == OPTIONS.epochs
    assert _losses(fitted) == _losses(without_workers)
    expected = without_workers.detector.state_dict()
    state = fitted.detector.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in state.items():
        assert tensor.device.type == "cpu", name  # back on the CPU for export
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0, msg=name)


def test_worker_count_follows_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcos_training, "LOADER_WORKERS", None)
    for cpus, expected in [(1, 0), (2, 0), (3, 1), (4, 2), (6, 4), (64, 4)]:
        monkeypatch.setattr(fcos_training, "available_cpus", lambda n=cpus: n)
        assert fcos_training.loader_workers() == expected, cpus
    monkeypatch.setattr(fcos_training, "LOADER_WORKERS", 3)
    assert fcos_training.loader_workers() == 3
