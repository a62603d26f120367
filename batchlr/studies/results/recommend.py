"""The batch size to train with on a device: of the near-optimal band's batch sizes, the one that
reaches the band's accuracy in the least time there (Pollux's goodput, measured rather than
modelled: epochs to the accuracy from the trials' learning curves, images per second from timed
steps on the device)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial

from batchlr.objectives.settings import Precision
from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.results.band import Band
from batchlr.studies.results.transfer import LrRule


@dataclasses.dataclass(frozen=True)
class BatchTiming:
    """One optimizer and batch size of the band on the device: its measured speed (None: it
    does not fit), the fewest epochs a band trial of both took to reach the target accuracy,
    the seconds that makes there, and the lr to train it with and its rule."""

    optimizer: str
    batch_size: int
    images_per_second: float | None
    epochs_to_target: float | None
    seconds_to_target: float | None
    lr: LrRule


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """The band's optimizers and batch sizes timed on ``device`` (``precision``), and the one
    with the least time to ``target_accuracy``, the lowest cross-validated accuracy in the
    band (what every member reached: the folds cannot tell any of them from the best)."""

    device: str
    precision: Precision
    target_accuracy: float
    timings: list[BatchTiming]

    @property
    def best(self) -> BatchTiming | None:
        """The timing with the least seconds to the target; None where none could be timed."""
        timed = [timing for timing in self.timings if timing.seconds_to_target is not None]
        return min(timed, key=lambda timing: timing.seconds_to_target or 0.0, default=None)

    def to_record(self) -> dict[str, Any]:
        best = self.best
        return {
            **dataclasses.asdict(self),
            "recommended": None if best is None else dataclasses.asdict(best),
        }


def epochs_to_target(
    trials: Sequence[FrozenTrial], band: Band, optimizer: str
) -> dict[int, tuple[float, int]]:
    """Per batch size of the band's ``optimizer`` members: the fewest epochs one of them took
    until its fold mean reached the band's lowest accuracy, with its steps per epoch.

    A round is an epoch under an epoch budget and a tenth of the steps under a step budget:
    round r ends after (r + 1) / rounds of the trial's optimizer steps.
    """
    members = set(band.members)
    target = band_floor(trials, band)
    found: dict[int, tuple[float, int]] = {}
    for trial in trials:
        record = TrialRecord.from_trial(trial)
        if trial.number not in members or trial.params.get("optimizer") != optimizer:
            continue
        curves, steps, per_epoch = (
            record.fold_curves,
            record.optimizer_steps,
            record.steps_per_epoch,
        )
        if not (curves and steps and per_epoch):
            continue  # a trial of batchlr 0.1.0 kept no curves
        rounds = [sum(scores) / len(scores) for scores in curves]
        reached = next(
            (index for index, mean in enumerate(rounds) if mean >= target - 1e-12), len(rounds) - 1
        )
        epochs = (reached + 1) / len(rounds) * steps / per_epoch
        batch_size = int(trial.params["batch_size"])
        if batch_size not in found or epochs < found[batch_size][0]:
            found[batch_size] = (epochs, per_epoch)
    return found


def band_floor(trials: Sequence[FrozenTrial], band: Band) -> float:
    """The lowest cross-validated accuracy of the band's members: what every one of them reached."""
    values = {trial.number: trial.values[0] for trial in trials if trial.number in band.members}
    return float(min(values.values()))


def recommend(
    device: str,
    precision: Precision,
    target_accuracy: float,
    epochs: Mapping[str, Mapping[int, tuple[float, int]]],
    speeds: Mapping[tuple[str, int], float | None],
    lrs: Mapping[tuple[str, int], LrRule],
) -> Recommendation:
    """The timings of the (optimizer, batch size) pairs in ``speeds``: ``epochs`` per optimizer
    (with steps per epoch) from :func:`epochs_to_target`, images per second measured on
    ``device``, and their ``lrs``."""
    timings = []
    for (optimizer, batch_size), speed in sorted(speeds.items()):
        epochs_needed, per_epoch = epochs.get(optimizer, {}).get(batch_size, (None, 0))
        seconds = (
            epochs_needed * per_epoch * batch_size / speed
            if speed and epochs_needed is not None
            else None
        )
        timings.append(
            BatchTiming(
                optimizer, batch_size, speed, epochs_needed, seconds, lrs[optimizer, batch_size]
            )
        )
    return Recommendation(device, precision, target_accuracy, timings)
