"""The Optuna objective: k-fold cross-validated accuracy of one batch size, learning rate and optimizer."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator

import numpy as np
import optuna
import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.data.datasets import ImageData
from batchlr.objectives.data.folds import HOLDOUT, FoldAssignment
from batchlr.objectives.models.catalog import build_model, parameter_count, resolve_model
from batchlr.objectives.schedules import make_scheduler
from batchlr.objectives.settings import TrainingSettings, steps_per_epoch
from batchlr.objectives.training.batches import Augmentation, DeviceImages, Normalisation
from batchlr.objectives.training.device import release_memory
from batchlr.objectives.training.execution import Execution
from batchlr.objectives.training.fold_models import check_fusable, fold_models
from batchlr.objectives.training.loop import BatchStream, FoldGroup, RoundResult, train_in_lockstep
from batchlr.objectives.training.optimizers import make_optimizer
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.space import Hyperparameters, SearchSpace


class CrossValidationObjective:
    """Trains one model per fold in lockstep and returns the mean validation accuracy.

    After every round the trial reports the fold mean, so a pruner can stop it early. A
    trial whose loss turns NaN or infinite is pruned at once with user attr ``reason`` =
    ``"diverged"``, one that runs out of device memory with ``"oom"``. The data (as uint8) and
    the fold indices move to ``device`` once, here; batches are normalised with the statistics
    of the images in the folds, never the hold-out's, and augmented as ``settings`` say.
    """

    def __init__(
        self,
        data: ImageData,
        folds: FoldAssignment,
        space: SearchSpace,
        model: str,
        settings: TrainingSettings,
        device: torch.device,
        seed: int,
        fuse_folds: str = "auto",
        compile: bool = False,
    ) -> None:
        self.data = data
        self.folds = folds
        self.space = space
        self.model_name = model
        self.model_factory = resolve_model(model)
        # Once here, so that a factory returning no module fails before a study records a trial.
        self.param_count = parameter_count(
            build_model(self.model_factory, model, data.input_shape, data.num_classes)
        )
        self.settings = settings
        self.device = device
        self.seed = seed
        self.execution = self._execution(fuse_folds, compile)
        self.normalisation = Normalisation.of(data.images, np.flatnonzero(folds.fold_of != HOLDOUT))
        augmentation = Augmentation(
            "flip" in settings.augment, settings.crop_padding_for(data.input_shape)
        )
        self.images = DeviceImages(
            data.images.to(device), data.labels.to(device), self.normalisation, augmentation
        )
        self.on_round: Callable[[int], None] | None = None
        """Called with the rounds done after each round of a trial, e.g. to show progress."""
        self.computing: Callable[[], contextlib.AbstractContextManager[None]] = (
            contextlib.nullcontext
        )
        """Entered around each round's training and validation, which take no lock of the
        storage's: where a signal may interrupt the trial at once."""
        self.fold_indices = [
            (torch.as_tensor(train, device=device), torch.as_tensor(val, device=device))
            for train, val in map(folds.train_val, range(folds.k))
        ]

    def _execution(self, fuse_folds: str, compile: bool) -> Execution:
        """How trials train here; ``--fuse-folds auto`` falls back to separate folds for a model
        torch.func cannot fuse, ``on`` says why it cannot."""
        builtin = ":" not in self.model_name
        execution = Execution.on(self.device, self.settings.precision, fuse_folds, compile, builtin)
        if execution.fuse_folds:
            try:
                check_fusable(self.new_model, self.data.input_shape, self.device, self.model_name)
            except BatchlrError:
                if fuse_folds == "on":
                    raise
                return Execution.on(self.device, self.settings.precision, "off", compile, builtin)
        return execution

    def new_model(self) -> torch.nn.Module:
        """A freshly initialised model on the device."""
        return build_model(
            self.model_factory, self.model_name, self.data.input_shape, self.data.num_classes
        ).to(self.device)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        hyperparameters = self.space.suggest(trial)
        batch_size = hyperparameters.batch_size
        micro_batching = self.settings.micro_batching
        torch.manual_seed(self.seed + trial.number)
        results: list[RoundResult] = []
        groups: list[FoldGroup] = []
        try:
            groups.append(
                self.fold_group(hyperparameters, self.fold_indices, self.seed + trial.number)
            )
            group = groups[0]
            epoch_steps = group.batches[0].epoch_steps
            TrialRecord(
                lr=hyperparameters.lr,
                param_count=self.param_count,
                device=str(self.device),
                precision=self.execution.precision,
                fused_folds=self.execution.fuse_folds,
                steps_per_epoch=epoch_steps,
                optimizer_steps=sum(group.rounds),
                samples_seen=sum(group.rounds) * batch_size,
                micro_batch=micro_batching.size(batch_size),
                accumulation_steps=micro_batching.accumulation_steps(batch_size),
            ).write(trial)
            epoch_images = epoch_steps * batch_size * group.models.count
            for result in _each_computing(
                train_in_lockstep(group, self.images, micro_batching), self.computing
            ):
                results.append(result)
                if self.on_round:
                    self.on_round(len(results))
                if result.diverged:
                    _results(results, epoch_images, reason="diverged").write(trial)
                    raise optuna.TrialPruned(f"loss became non-finite in round {result.round + 1}")
                if len(self.settings.objectives) == 1:
                    trial.report(statistics.fmean(result.val_accuracy), result.round)
                    if trial.should_prune():
                        _results(results, epoch_images, reason="pruned").write(trial)
                        raise optuna.TrialPruned(f"pruned after round {result.round + 1}")
        except torch.OutOfMemoryError:
            out_of_memory = True
        else:
            out_of_memory = False
        if out_of_memory:
            # Outside the except block, so that no traceback holds the activations any more.
            groups.clear()
            release_memory(self.device)
            if self.execution.fuse_folds and not results:
                return self._separately(trial)
            TrialRecord(reason="oom").write(trial)
            raise optuna.TrialPruned(
                f"out of memory at batch {batch_size}, micro-batch {micro_batching.size(batch_size)}"
            )
        record = _results(results, epoch_images, reason=None)
        record.write(trial)
        accuracy = statistics.fmean(results[-1].val_accuracy)
        if len(self.settings.objectives) == 2:
            assert record.train_seconds is not None  # _results sets every result
            return accuracy, record.train_seconds
        return accuracy

    def _separately(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """``trial`` again from its start with separate folds, which hold one fold's
        activations at a time where fused ones hold all k: a batch that fits one model need
        not fit k. Optuna gives the trial the same parameters again."""
        fused = self.execution
        self.execution = self._execution("off", fused.compile)
        try:
            return self(trial)
        finally:
            self.execution = fused

    def release(self) -> None:
        """Give the device memory of the data back, for a process whose workers train instead."""
        empty = torch.empty(0)
        self.images = DeviceImages(empty.byte(), empty.long(), self.normalisation)
        self.fold_indices = []
        release_memory(self.device)

    def fold_group(
        self,
        hyperparameters: Hyperparameters,
        folds: list[tuple[torch.Tensor, torch.Tensor]],
        seed: int,
    ) -> FoldGroup:
        """Fresh models, one optimizer and schedule for the ``folds`` (training and validation
        indices), each fold shuffling and augmenting with its own generator seeded from ``seed``.

        Every fold takes the optimizer steps of the smallest one, so that they step together.
        """
        batch_size = hyperparameters.batch_size
        models = fold_models([self.new_model() for _ in folds], self.execution)
        optimizer = make_optimizer(hyperparameters, models.parameters())
        train_size = min(len(train) for train, _ in folds)
        rounds = self.settings.budget.rounds(train_size, batch_size)
        warmup_steps = self.settings.warmup_steps(train_size, batch_size)
        scheduler = make_scheduler(optimizer, sum(rounds), self.settings.schedule, warmup_steps)
        epoch_steps = steps_per_epoch(train_size, batch_size)
        batches = [
            BatchStream(train, batch_size, fold_generator(self.device, seed, fold), epoch_steps)
            for fold, (train, _) in enumerate(folds)
        ]
        return FoldGroup(
            models,
            optimizer,
            scheduler,
            batches,
            [val for _, val in folds],
            rounds,
            self.execution,
            self.settings.label_smoothing,
        )


def fold_generator(device: torch.device, seed: int, fold: int) -> torch.Generator:
    """Fold ``fold``'s random generator for a trial seeded ``seed``: independent streams per fold."""
    state = np.random.SeedSequence([seed, fold]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


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
