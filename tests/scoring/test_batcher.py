"""The dynamic batcher on real tiny ONNX Runtime sessions: batches form up to the size
limit, each request gets its own rows, models never mix, a full queue refuses, a
timed-out request is skipped, and one bad request does not fail its batch."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.scoring.batcher import BatchResult, DynamicBatcher, QueueFullError
from services.scoring.model import LoadedModel, ModelIdentity, session_options
from services.scoring.settings import ScoringSettings
from visiondock.preprocess import to_tensor

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _load(path: Path, version: int = 1) -> LoadedModel:
    settings = ScoringSettings(scoring_intra_op_threads=1)
    return LoadedModel(path, ModelIdentity("tiny", version, "0" * 64, "test"), options=session_options(settings))


def _input(model: LoadedModel, colour: tuple[int, int, int]) -> np.ndarray:
    size = model.card.preprocess.size
    return to_tensor(Image.new("RGB", (size, size), colour), model.card.preprocess)[None]


def _infer_at_once(batcher: DynamicBatcher, model: LoadedModel, count: int) -> list[BatchResult]:
    """`count` requests at once, of colours 0, 1, 2, 0, ...; the batcher runs for them and stops after."""
    batcher.start()

    async def scenario() -> list[BatchResult]:
        return await asyncio.gather(*(batcher.infer(model, _input(model, COLOURS[i % 3]), timeout=10)
                                      for i in range(count)))

    try:
        return asyncio.run(scenario())
    finally:
        batcher.stop()


def test_concurrent_requests_share_batches_and_get_their_own_rows(models: dict[str, Path]) -> None:
    model = _load(models["multiclass"])
    batcher = DynamicBatcher(max_batch_size=4, max_queue_delay=0.05, max_queue_size=64)
    answers = list(zip([i % 3 for i in range(10)], _infer_at_once(batcher, model, 10), strict=True))
    for colour, result in answers:
        assert result.outputs[0].shape == (1, 3)
        assert int(result.outputs[0][0].argmax()) == colour
    sizes = [result.batch_size for _, result in answers]
    assert max(sizes) == 4  # ten requests at once: full batches, never more than the limit
    assert all(size <= 4 for size in sizes)


def test_a_model_with_a_smaller_batch_limit_keeps_to_it(models: dict[str, Path]) -> None:
    settings = ScoringSettings(scoring_intra_op_threads=1)
    model = LoadedModel(models["multiclass"], ModelIdentity("tiny", 1, "0" * 64, "test"),
                        options=session_options(settings), max_batch=2)
    batcher = DynamicBatcher(max_batch_size=8, max_queue_delay=0.05, max_queue_size=64)
    results = _infer_at_once(batcher, model, 10)
    assert max(result.batch_size for result in results) == 2


def test_a_lone_request_runs_alone_after_the_delay(models: dict[str, Path]) -> None:
    model = _load(models["multiclass"])
    batcher = DynamicBatcher(max_batch_size=8, max_queue_delay=0.01, max_queue_size=8)
    batcher.start()
    try:
        result = asyncio.run(batcher.infer(model, _input(model, COLOURS[1]), timeout=10))
    finally:
        batcher.stop()
    assert result.batch_size == 1 and int(result.outputs[0][0].argmax()) == 1
    assert result.queue_seconds >= 0 and result.inference_seconds > 0


def test_two_models_never_share_a_batch(models: dict[str, Path]) -> None:
    classifier, detector = _load(models["multiclass"]), _load(models["detection"])
    batcher = DynamicBatcher(max_batch_size=16, max_queue_delay=0.05, max_queue_size=64)
    batcher.start()

    async def scenario() -> list:
        calls = [batcher.infer(classifier if i % 2 else detector,
                               _input(classifier, COLOURS[i % 3]), timeout=10) for i in range(12)]
        return await asyncio.gather(*calls)

    try:
        results = asyncio.run(scenario())
    finally:
        batcher.stop()
    for i, result in enumerate(results):
        if i % 2:
            assert len(result.outputs) == 1 and result.outputs[0].shape == (1, 3)
        else:  # boxes and scores
            assert [o.shape for o in result.outputs] == [(1, 4, 4), (1, 4, 3)]
        assert result.batch_size <= 6  # six requests of each model


def test_full_queue_refuses_and_timed_out_requests_are_skipped(models: dict[str, Path]) -> None:
    model = _load(models["multiclass"])
    batcher = DynamicBatcher(max_batch_size=4, max_queue_delay=0.0, max_queue_size=2)

    async def scenario() -> None:
        # No worker yet: two requests wait, the third finds the queue full.
        waiting = [asyncio.ensure_future(batcher.infer(model, _input(model, COLOURS[0]), timeout=0.2))
                   for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.infer(model, _input(model, COLOURS[0]), timeout=1)
        for future in waiting:
            with pytest.raises(TimeoutError):
                await future
        batcher.start()  # the abandoned two are skipped; a new request is answered
        answer = await batcher.infer(model, _input(model, COLOURS[2]), timeout=10)
        assert int(answer.outputs[0][0].argmax()) == 2 and answer.batch_size == 1

    try:
        asyncio.run(scenario())
    finally:
        batcher.stop()


def test_one_bad_request_fails_alone(models: dict[str, Path]) -> None:
    model = _load(models["multiclass"])
    batcher = DynamicBatcher(max_batch_size=8, max_queue_delay=0.05, max_queue_size=16)
    batcher.start()
    wrong_size = np.zeros((1, 3, 8, 8), dtype=np.float32)  # cannot be stacked with the others

    async def scenario() -> list:
        calls = [batcher.infer(model, _input(model, COLOURS[0]), timeout=10),
                 batcher.infer(model, wrong_size, timeout=10),
                 batcher.infer(model, _input(model, COLOURS[2]), timeout=10)]
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        first, bad, last = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert int(first.outputs[0][0].argmax()) == 0 and int(last.outputs[0][0].argmax()) == 2
    assert isinstance(bad, Exception)


def test_several_runners_run_batches_at_once(models: dict[str, Path]) -> None:
    model = _load(models["multiclass"])
    run = model.run
    # The first two runs each wait until the other has started: with one runner the barrier breaks.
    both_running = threading.Barrier(2, timeout=5)
    threads: list[str] = []

    def run_together(batch: np.ndarray) -> list[np.ndarray]:
        threads.append(threading.current_thread().name)
        if len(threads) <= 2:
            both_running.wait()
        return run(batch)

    model.run = run_together  # type: ignore[method-assign]
    batcher = DynamicBatcher(max_batch_size=4, max_queue_delay=0.05, max_queue_size=64, runners=2)
    results = _infer_at_once(batcher, model, 8)
    assert [int(r.outputs[0][0].argmax()) for r in results] == [i % 3 for i in range(8)]
    assert len(set(threads[:2])) == 2  # two runner threads, each with its own batch


def test_a_batcher_needs_a_runner() -> None:
    with pytest.raises(ValueError, match="at least one runner"):
        DynamicBatcher(max_batch_size=4, max_queue_delay=0.0, max_queue_size=2, runners=0)
