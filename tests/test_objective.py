"""The objective on real data (scikit-learn's digits): reports, pruning, divergence, user attrs."""

from pathlib import Path
import statistics

import optuna
import pytest
import torch

from batchlr.objectives.data import load_dataset
from batchlr.objectives.folds import assign_folds
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.search.space import SearchSpace

EPOCHS = 3


class PruneAtFirstReport(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


@pytest.fixture(scope="module")
def objective() -> CrossValidationObjective:
    data = load_dataset("digits", Path("unused"))
    folds = assign_folds(data.labels.numpy(), 2, seed=0, holdout=True)
    space = SearchSpace().clip_batch_size(folds.smallest_train_size())
    return CrossValidationObjective(data, folds, space, "convnet", EPOCHS, torch.device("cpu"), seed=0)


def _run(objective, params, pruner=None) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=1)
    return study.trials[0]


def test_complete_trial_reports_each_epoch_and_returns_the_fold_mean(objective):
    trial = _run(objective, {"batch_size": 32, "lr": 3e-3, "optimizer": "adam"})
    assert trial.state == optuna.trial.TrialState.COMPLETE
    attrs = trial.user_attrs
    assert len(attrs["fold_scores"]) == 2
    assert trial.value == pytest.approx(statistics.fmean(attrs["fold_scores"]))
    assert sorted(trial.intermediate_values) == list(range(EPOCHS))
    assert trial.intermediate_values[EPOCHS - 1] == trial.value
    assert trial.value > 0.8  # digits is easy: a working loop learns it in three epochs
    assert attrs["steps_per_epoch"] == len(objective.fold_indices[0][0]) // 32
    assert attrs["param_count"] > 0 and attrs["images_per_second"] > 0 and attrs["seconds_per_epoch"] > 0
    assert attrs["generalization_gap"] == pytest.approx(attrs["train_accuracy"] - trial.value)
    assert "reason" not in attrs


def test_pruner_stops_a_trial_after_its_first_epoch(objective):
    trial = _run(objective, {"batch_size": 64, "lr": 1e-3, "optimizer": "adam"}, pruner=PruneAtFirstReport())
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    assert trial.user_attrs["reason"] == "pruned" and trial.user_attrs["epochs_run"] == 1


def test_a_diverging_trial_is_pruned_and_the_study_goes_on(objective):
    wide = CrossValidationObjective(
        objective.data, objective.folds, SearchSpace(lr=(1e-4, 100.0)), "convnet", EPOCHS, torch.device("cpu"), seed=0
    )
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"batch_size": 32, "lr": 10.0, "optimizer": "sgd", "momentum": 0.9})
    study.enqueue_trial({"batch_size": 64, "lr": 1e-3, "optimizer": "adam"})
    study.optimize(wide, n_trials=2)
    diverged, healthy = study.trials
    assert diverged.state == optuna.trial.TrialState.PRUNED
    assert diverged.user_attrs["reason"] == "diverged"
    assert diverged.user_attrs["epochs_run"] == 1 and not diverged.intermediate_values
    assert healthy.state == optuna.trial.TrialState.COMPLETE
