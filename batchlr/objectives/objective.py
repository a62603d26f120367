"""The Optuna objective: k-fold cross-validated accuracy of one batch size, learning rate and optimizer."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections.abc import Callable, Iterator

import optuna
import torch

from batchlr.objectives.data.datasets import ImageData
from batchlr.objectives.data.folds import FoldAssignment
from batchlr.objectives.models.catalog import parameter_count
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training.batches import DeviceImages
from batchlr.objectives.training.device import release_memory
from batchlr.objectives.training.fold_group import RoundResult
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.space import Hyperparameters, SearchSpace


class CrossValidationObjective:
    """Trains one model per fold in lockstep with ``trainer`` and returns the mean validation
    accuracy.

    After every round the trial reports the fold mean, so a pruner can stop it early. A
    trial whose loss turns NaN or infinite is pruned at once with user attr ``reason`` =
    ``"diverged"``, one that runs out of device memory with ``"oom"``.
    """

    def __init__(
        self,
        trainer: Trainer,
        data: ImageData,
        folds: FoldAssignment,
        space: SearchSpace,
        seed: int,
    ) -> None:
        self.trainer = trainer
        self.data = data
        self.folds = folds
        self.space = space
        self.seed = seed
        self.param_count = parameter_count(trainer.new_model())
        self.on_round: Callable[[int], None] | None = None
        """Called with the rounds done after each round of a trial, e.g. to show progress."""
        self.computing: Callable[[], contextlib.AbstractContextManager[None]] = (
            contextlib.nullcontext
        )
        """Entered around each round's training and validation, which take no lock of the
        storage's: where a signal may interrupt the trial at once."""
        self.fold_indices = [
            (
                torch.as_tensor(train, device=trainer.device),
                torch.as_tensor(val, device=trainer.device),
            )
            for train, val in map(folds.train_val, range(folds.k))
        ]

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        hyperparameters = self.space.suggest(trial)
        torch.manual_seed(self.seed + trial.number)
        results: list[RoundResult] = []
        try:
            record = self._train(trial, hyperparameters, results)
        except torch.OutOfMemoryError:
            out_of_memory = True
        else:
            out_of_memory = False
        if out_of_memory:
            # Outside the except block, whose traceback held the activations until it ended.
            release_memory(self.trainer.device)
            if self.trainer.execution.fuse_folds and not results:
                return self._separately(trial)
            TrialRecord(reason="oom").write(trial)
            micro_batch = self.trainer.settings.micro_batching.size(hyperparameters.batch_size)
            raise optuna.TrialPruned(
                f"out of memory at batch {hyperparameters.batch_size}, micro-batch {micro_batch}"
            )
        accuracy = statistics.fmean(results[-1].val_accuracy)
        if len(self.trainer.settings.objectives) == 2:
            assert record.train_seconds is not None  # _results sets every result
            return accuracy, record.train_seconds
        return accuracy

    def _train(
        self, trial: optuna.Trial, hyperparameters: Hyperparameters, results: list[RoundResult]
    ) -> TrialRecord:
        """Train the trial's folds round by round into ``results``, reporting each round and
        writing the trial's record; returns the record of a trial that trained to the end.

        Raises:
            optuna.TrialPruned: when the pruner stops the trial or its loss diverges.
        """
        trainer, batch_size = self.trainer, hyperparameters.batch_size
        micro_batching = trainer.settings.micro_batching
        group = trainer.fold_group(hyperparameters, self.fold_indices, self.seed + trial.number)
        epoch_steps = group.batches[0].epoch_steps
        TrialRecord(
            lr=hyperparameters.lr,
            param_count=self.param_count,
            device=str(trainer.device),
            precision=trainer.execution.precision,
            fused_folds=trainer.execution.fuse_folds,
            steps_per_epoch=epoch_steps,
            optimizer_steps=sum(group.rounds),
            samples_seen=sum(group.rounds) * batch_size,
            micro_batch=micro_batching.size(batch_size),
            accumulation_steps=micro_batching.accumulation_steps(batch_size),
        ).write(trial)
        epoch_images = epoch_steps * batch_size * group.models.count
        for result in _each_computing(trainer.rounds(group), self.computing):
            results.append(result)
            if self.on_round:
                self.on_round(len(results))
            if result.diverged:
                _results(results, epoch_images, reason="diverged").write(trial)
                raise optuna.TrialPruned(f"loss became non-finite in round {result.round + 1}")
            if len(trainer.settings.objectives) == 1:
                trial.report(statistics.fmean(result.val_accuracy), result.round)
                # After the last round, pruning would save nothing and lose a finished trial.
                if result.round < len(group.rounds) - 1 and trial.should_prune():
                    _results(results, epoch_images, reason="pruned").write(trial)
                    raise optuna.TrialPruned(f"pruned after round {result.round + 1}")
        record = _results(results, epoch_images, reason=None)
        record.write(trial)
        return record

    def _separately(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """``trial`` again from its start with separate folds, which hold one fold's
        activations at a time where fused ones hold all k: a batch that fits one model need
        not fit k. Optuna gives the trial the same parameters again."""
        fused = self.trainer
        self.trainer = fused.with_folds("off", fused.execution.compile)
        try:
            return self(trial)
        finally:
            self.trainer = fused

    def release(self) -> None:
        """Give the device memory of the data back, for a process whose workers train instead."""
        device, empty = self.trainer.device, torch.empty(0, device=self.trainer.device)
        images = DeviceImages(empty.byte(), empty.long(), self.trainer.images.normalisation)
        self.trainer = dataclasses.replace(self.trainer, images=images)
        self.fold_indices = []
        release_memory(device)


def _results(results: list[RoundResult], epoch_images: int, reason: str | None) -> TrialRecord:
    """The record of a trial's results: the last round's per-fold scores, every round's
    (``fold_curves``) and the trial's speed, with ``reason`` where it stopped early.

    ``epoch_images`` is what one epoch of every fold trains on; ``seconds_per_epoch`` is per fold.
    """
    last = results[-1]
    train_seconds = sum(result.train_seconds for result in results)
    images_per_second = sum(result.train_images for result in results) / train_seconds
    return TrialRecord(
        fold_scores=last.val_accuracy,
        fold_curves=[result.val_accuracy for result in results],
        train_accuracy=statistics.fmean(last.train_accuracy),
        generalization_gap=statistics.fmean(last.train_accuracy)
        - statistics.fmean(last.val_accuracy),
        rounds_run=len(results),
        train_images=sum(result.train_images for result in results),
        train_seconds=train_seconds,
        images_per_second=images_per_second,
        seconds_per_epoch=epoch_images / len(last.val_accuracy) / images_per_second,
        reason=reason,
    )


def _each_computing(
    rounds: Iterator[RoundResult], computing: Callable[[], contextlib.AbstractContextManager[None]]
) -> Iterator[RoundResult]:
    """``rounds``, each computed inside ``computing()``, and handed on outside it."""
    while True:
        with computing():
            result = next(rounds, None)
        if result is None:
            return
        yield result
