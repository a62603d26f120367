"""The objective on real data (scikit-learn's digits): reports, pruning, divergence, memory, budgets."""

import statistics
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from batchlr.objectives.data import assign_folds, load_dataset
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.search.lr_scaling import LrScaling
from batchlr.search.space import SearchSpace

EPOCHS = 3


class PruneAtFirstReport(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def oom_above_64(input_shape, num_classes):
    """A model whose training pass runs out of memory for more than 64 samples, like a full GPU."""

    class Model(nn.Sequential):
        def forward(self, inputs):
            if len(inputs) > 64 and torch.is_grad_enabled():
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(inputs)

    return Model(nn.Flatten(), nn.Linear(64, num_classes))


class Exponential(nn.Module):
    def forward(self, inputs):
        return inputs.exp()


def exploding(input_shape, num_classes):
    """Logits that overflow once a large learning rate grows the weights, whatever the batches drawn
    (a ReLU network may die instead, with finite loss)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes), Exponential())


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", Path("unused"))
    return data, assign_folds(data.labels.numpy(), 2, seed=0, holdout=True)


DEFAULT_SPACE = SearchSpace()


def make_objective(
    digits, space=DEFAULT_SPACE, model="convnet", fuse_folds="off", **settings
) -> CrossValidationObjective:
    data, folds = digits
    training = TrainingSettings(**{"budget": Budget("epochs", EPOCHS), **settings})
    trainer = Trainer.on(data, folds.searched(), model, training, torch.device("cpu"), fuse_folds)
    return CrossValidationObjective(trainer, data, folds, space, seed=0)


# Every precision, and fused folds, keep the paths that end a trial early.
EXECUTIONS = pytest.mark.parametrize(
    ("precision", "fuse_folds"), [("fp32", "off"), ("bf16", "off"), ("fp16", "off"), ("bf16", "on")]
)


def run_trials(
    objective, *params, pruner=None, directions=("maximize",)
) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(directions=list(directions), pruner=pruner)
    for one in params:
        study.enqueue_trial(one)
    study.optimize(objective, n_trials=len(params))
    return study.trials


def test_complete_trial_reports_each_epoch_and_returns_the_fold_mean(digits):
    objective = make_objective(digits)
    (trial,) = run_trials(objective, {"batch_size": 32, "lr": 3e-3, "optimizer": "adam"})
    assert trial.state == optuna.trial.TrialState.COMPLETE
    attrs = trial.user_attrs
    assert len(attrs["fold_scores"]) == 2
    assert trial.value == pytest.approx(statistics.fmean(attrs["fold_scores"]))
    assert sorted(trial.intermediate_values) == list(range(EPOCHS))
    assert trial.intermediate_values[EPOCHS - 1] == trial.value
    assert trial.value > 0.8  # digits is easy: a working loop learns it in three epochs
    steps_per_epoch = len(objective.fold_indices[0][0]) // 32
    assert (
        attrs["steps_per_epoch"] == steps_per_epoch
        and attrs["optimizer_steps"] == EPOCHS * steps_per_epoch
    )
    assert attrs["samples_seen"] == EPOCHS * steps_per_epoch * 32
    assert attrs["train_images"] == 2 * attrs["samples_seen"]  # two folds
    assert (
        attrs["param_count"] > 0
        and attrs["images_per_second"] > 0
        and attrs["seconds_per_epoch"] > 0
    )
    assert attrs["generalization_gap"] == pytest.approx(attrs["train_accuracy"] - trial.value)
    assert attrs["lr"] == 3e-3 and attrs["accumulation_steps"] == 1
    assert "reason" not in attrs


def test_pruner_stops_a_trial_after_its_first_epoch(digits):
    (trial,) = run_trials(
        make_objective(digits),
        {"batch_size": 64, "lr": 1e-3, "optimizer": "adam"},
        pruner=PruneAtFirstReport(),
    )
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    assert trial.user_attrs["reason"] == "pruned" and trial.user_attrs["rounds_run"] == 1
    # what the trial cost: one epoch of each fold, not the budget
    assert trial.user_attrs["train_images"] == 2 * trial.user_attrs["samples_seen"] // EPOCHS


def test_a_trial_past_its_last_epoch_completes_whatever_the_pruner_says(digits):
    """A pruner may decide after the last epoch (successive halving's rungs fell on the last
    of 10 epochs before they stopped at half the budget): pruning there saves no training and
    would lose a finished trial."""
    (trial,) = run_trials(
        make_objective(digits, budget=Budget("epochs", 1)),
        {"batch_size": 64, "lr": 1e-3, "optimizer": "adam"},
        pruner=PruneAtFirstReport(),
    )
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert list(trial.intermediate_values) == [0]


@EXECUTIONS
def test_a_diverging_trial_is_pruned_and_the_study_goes_on(digits, precision, fuse_folds):
    objective = make_objective(
        digits,
        space=SearchSpace(lr=(1e-4, 1e3)),
        model=f"{__name__}:exploding",
        precision=precision,
        fuse_folds=fuse_folds,
    )
    diverged, healthy = run_trials(
        objective,
        {"batch_size": 32, "lr": 1e3, "optimizer": "sgd", "momentum": 0.9},
        {"batch_size": 64, "lr": 1e-3, "optimizer": "adam"},
        pruner=optuna.pruners.NopPruner(),
    )
    assert diverged.state == optuna.trial.TrialState.PRUNED
    assert diverged.user_attrs["reason"] == "diverged"
    assert diverged.user_attrs["rounds_run"] == 1 and not diverged.intermediate_values
    assert healthy.state == optuna.trial.TrialState.COMPLETE


@EXECUTIONS
def test_out_of_memory_ends_the_trial_and_the_study_goes_on(digits, precision, fuse_folds):
    objective = make_objective(
        digits, model=f"{__name__}:oom_above_64", precision=precision, fuse_folds=fuse_folds
    )
    too_big, fits = run_trials(
        objective,
        {"batch_size": 128, "lr": 1e-2, "optimizer": "adam"},
        {"batch_size": 32, "lr": 1e-2, "optimizer": "adam"},
    )
    assert too_big.state == optuna.trial.TrialState.PRUNED and too_big.user_attrs["reason"] == "oom"
    assert fits.state == optuna.trial.TrialState.COMPLETE


@EXECUTIONS
def test_a_micro_batch_cap_accumulates_instead_of_running_out_of_memory(
    digits, precision, fuse_folds
):
    objective = make_objective(
        digits,
        model=f"{__name__}:oom_above_64",
        max_micro_batch=50,
        precision=precision,
        fuse_folds=fuse_folds,
    )
    (trial,) = run_trials(objective, {"batch_size": 128, "lr": 1e-2, "optimizer": "adam"})
    assert trial.state == optuna.trial.TrialState.COMPLETE
    # 43 + 43 + 42
    assert trial.user_attrs["micro_batch"] == 43 and trial.user_attrs["accumulation_steps"] == 3


def test_linear_lr_scaling_trains_with_the_scaled_lr(digits):
    space = SearchSpace(lr_scaling=LrScaling("linear", reference_batch_size=32))
    (trial,) = run_trials(
        make_objective(digits, space=space),
        {"batch_size": 128, "base_lr": 1e-3, "optimizer": "adam"},
    )
    assert "lr" not in trial.params and trial.params["base_lr"] == 1e-3
    assert trial.user_attrs["lr"] == pytest.approx(4e-3)


def test_step_budget_trains_the_same_steps_at_every_batch_size(digits):
    objective = make_objective(digits, budget=Budget("steps", 40))
    small, large = run_trials(
        objective,
        {"batch_size": 16, "lr": 1e-3, "optimizer": "adam"},
        {"batch_size": 256, "lr": 1e-3, "optimizer": "adam"},
    )
    for trial, batch_size in ((small, 16), (large, 256)):
        assert (
            trial.user_attrs["optimizer_steps"] == 40
            and trial.user_attrs["samples_seen"] == 40 * batch_size
        )
        assert len(trial.intermediate_values) == 10


def test_two_objectives_return_accuracy_and_seconds_without_reports(digits):
    objective = make_objective(digits, objectives=("accuracy", "time"))
    (trial,) = run_trials(
        objective,
        {"batch_size": 64, "lr": 1e-3, "optimizer": "adam"},
        directions=("maximize", "minimize"),
    )
    accuracy, seconds = trial.values
    assert accuracy == pytest.approx(statistics.fmean(trial.user_attrs["fold_scores"]))
    assert seconds == trial.user_attrs["train_seconds"] > 0
    assert not trial.intermediate_values
