"""The time a detection run says it has left, from the seconds its epochs take."""

from __future__ import annotations

import pytest

from services.trainer.tasks.detection import RunPace


def test_the_time_left_counts_the_epochs_to_come_the_refit_and_the_steps_after_training() -> None:
    pace = RunPace(fit_epochs=24, refit_epochs=0, refit_share=1.25)
    assert pace.remaining(0) is None  # nothing measured yet
    pace.epoch_done(10.0)
    after = RunPace.AFTER_TRAINING_EPOCHS
    assert pace.remaining(1) == pytest.approx(10.0 * (23 + after))
    # The median pace: one slow epoch (another process took the cores) barely moves the estimate.
    for seconds in (6.0, 6.0, 30.0, 6.0):
        pace.epoch_done(seconds)
    assert pace.remaining(5) == pytest.approx(6.0 * (19 + after))
    assert pace.remaining(24) == pytest.approx(6.0 * after)

    # With a refit on 25 images after a fit on 20, its epochs are a quarter longer and still to come.
    refitting = RunPace(fit_epochs=60, refit_epochs=60, refit_share=1.25)
    refitting.epoch_done(4.0)
    assert refitting.remaining(1) == pytest.approx(4.0 * (59 + 60 * 1.25 + after))
    refitting.refitting = True
    refitting.epoch_done(5.0)  # a refit epoch: 4 s of fit pace
    assert refitting.remaining(10) == pytest.approx(4.0 * (50 * 1.25 + after))


def test_the_time_left_follows_a_machine_that_gets_quieter() -> None:
    """Epochs of 30 s while other work held the cores, then of 10 s: the estimate follows the recent
    pace, not the whole run's median."""
    pace = RunPace(fit_epochs=24, refit_epochs=0, refit_share=1.0)
    for seconds in [30.0] * 6 + [10.0] * RunPace.RECENT_EPOCHS:
        pace.epoch_done(seconds)
    done = 6 + RunPace.RECENT_EPOCHS
    assert pace.remaining(done) == pytest.approx(10.0 * (24 - done + RunPace.AFTER_TRAINING_EPOCHS))
