"""The Optuna objective: k-fold cross-validated accuracy of one batch size, learning rate and optimizer."""

from __future__ import annotations

import statistics

import optuna
import torch

from batchlr.objectives.data import ImageData
from batchlr.objectives.folds import FoldAssignment
from batchlr.objectives.models import build_model, parameter_count, resolve_model
from batchlr.objectives.optimizers import make_optimizer
from batchlr.objectives.training import EpochResult, FoldRun, train_in_lockstep
from batchlr.search.space import Hyperparameters, SearchSpace


class CrossValidationObjective:
    """Trains one model per fold in lockstep and returns the mean validation accuracy.

    After every epoch the trial reports the fold mean, so a pruner can stop it early. A
    trial whose loss turns NaN or infinite is pruned at once with user attr ``reason`` =
    ``"diverged"``. The data and the fold indices move to ``device`` once, here.
    """

    def __init__(
        self,
        data: ImageData,
        folds: FoldAssignment,
        space: SearchSpace,
        model: str,
        epochs: int,
        device: torch.device,
        seed: int,
    ) -> None:
        self.data = data
        self.folds = folds
        self.space = space
        self.model_name = model
        self.model_factory = resolve_model(model)
        self.epochs = epochs
        self.device = device
        self.seed = seed
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.fold_indices = [
            tuple(torch.as_tensor(part, device=device) for part in folds.train_val(fold)) for fold in range(folds.k)
        ]

    def __call__(self, trial: optuna.Trial) -> float:
        hyperparameters = self.space.suggest(trial)
        torch.manual_seed(self.seed + trial.number)
        generator = torch.Generator(device=self.device).manual_seed(self.seed + trial.number)
        runs = [self._fold_run(hyperparameters, train, val) for train, val in self.fold_indices]
        trial.set_user_attr("param_count", parameter_count(runs[0].model))
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("steps_per_epoch", len(runs[0].train_indices) // hyperparameters.batch_size)
        results: list[EpochResult] = []
        for result in train_in_lockstep(
            runs, self.images, self.labels, hyperparameters.batch_size, self.epochs, generator
        ):
            results.append(result)
            if result.diverged:
                _record(trial, results, reason="diverged")
                raise optuna.TrialPruned(f"loss became non-finite in epoch {result.epoch + 1}")
            trial.report(statistics.fmean(result.val_accuracy), result.epoch)
            if trial.should_prune():
                _record(trial, results, reason="pruned")
                raise optuna.TrialPruned(f"pruned after epoch {result.epoch + 1}")
        _record(trial, results, reason=None)
        return statistics.fmean(results[-1].val_accuracy)

    def _fold_run(self, hyperparameters: Hyperparameters, train: torch.Tensor, val: torch.Tensor) -> FoldRun:
        model = build_model(self.model_factory, self.model_name, self.data.input_shape, self.data.num_classes)
        model = model.to(self.device)
        return FoldRun(model, make_optimizer(hyperparameters, model.parameters()), train, val)


def _record(trial: optuna.Trial, results: list[EpochResult], reason: str | None) -> None:
    """Store the last epoch's per-fold scores and the trial's speed as user attrs."""
    last = results[-1]
    train_seconds = sum(result.train_seconds for result in results)
    attrs = {
        "fold_scores": last.val_accuracy,
        "train_accuracy": statistics.fmean(last.train_accuracy),
        "generalization_gap": statistics.fmean(last.train_accuracy) - statistics.fmean(last.val_accuracy),
        "epochs_run": len(results),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / len(results) / len(last.val_accuracy),
        "images_per_second": sum(result.train_images for result in results) / train_seconds,
    }
    if reason is not None:
        attrs["reason"] = reason
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
