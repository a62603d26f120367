"""The pruners by name, driven with ask/report as Optuna's own tests drive them."""

import optuna
import pytest

from batchlr.search.pruners import PRUNER_NAMES, make_pruner


def tell_complete(study: optuna.Study, values: list[float]) -> None:
    trial = study.ask()
    for epoch, value in enumerate(values):
        trial.report(value, epoch)
    study.tell(trial, values[-1])


def first_pruned_epoch(
    study: optuna.Study, values: list[float], optimizer: str | None = None
) -> int | None:
    """The epoch after which the pruner stops a trial (of ``optimizer``, where given) reporting
    ``values``, or None."""
    if optimizer:
        study.enqueue_trial({"optimizer": optimizer})
    trial = study.ask()
    if optimizer:
        trial.suggest_categorical("optimizer", ["adam", "sgd"])
    for epoch, value in enumerate(values):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, values[-1])
    return None


def test_median_prunes_after_the_first_epoch_once_five_trials_completed():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 3))
    for _ in range(4):
        tell_complete(study, [0.8, 0.85, 0.9])
    # Four complete trials are too few to judge by: this one runs to the end, the fifth.
    assert first_pruned_epoch(study, [0.1, 0.1, 0.1]) is None
    assert first_pruned_epoch(study, [0.1, 0.1, 0.1]) == 0
    assert first_pruned_epoch(study, [0.95, 0.95, 0.95]) is None


BEST = [0.5, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.85]


def test_wilcoxon_waits_two_epochs_then_prunes_a_trial_worse_at_every_epoch():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("wilcoxon", len(BEST)))
    tell_complete(study, BEST)
    epoch = first_pruned_epoch(study, [value - 0.1 for value in BEST])
    assert epoch is not None and 2 <= epoch < len(BEST) - 1
    assert first_pruned_epoch(study, [value + 0.05 for value in BEST]) is None


def test_asha_keeps_the_better_half_after_epochs_1_2_and_4():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("asha", 10))
    assert first_pruned_epoch(study, [0.5] * 10) is None  # the first at each rung goes on
    assert first_pruned_epoch(study, [0.6] * 10) is None  # better than every trial so far
    # the worst of three after the first epoch: the better half of three is the best one
    assert first_pruned_epoch(study, [0.4] * 10) == 0
    # second of four after the first epoch, then behind both trials that reached the second
    # rung, after the second epoch
    assert first_pruned_epoch(study, [0.55] * 10) == 1
    # the best after epochs 1 and 2, the worst after the fourth
    assert first_pruned_epoch(study, [0.7, 0.7, 0.7, 0.45] + [0.7] * 6) == 3


def test_asha_decides_only_while_half_the_epochs_remain():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("asha", 10))
    assert first_pruned_epoch(study, [0.5] * 10) is None
    assert first_pruned_epoch(study, [0.6] * 10) is None
    # the best at the rungs after epochs 1, 2 and 4, the worst after epoch 8 of 10: trains on
    assert first_pruned_epoch(study, [0.7] * 7 + [0.1] * 3) is None
    # with 5 epochs the rung after epoch 4 decides nothing either
    study = optuna.create_study(direction="maximize", pruner=make_pruner("asha", 5))
    assert first_pruned_epoch(study, [0.5] * 5) is None
    assert first_pruned_epoch(study, [0.6] * 5) is None
    assert first_pruned_epoch(study, [0.7, 0.7, 0.7, 0.1, 0.1]) is None
    assert first_pruned_epoch(study, [0.1] * 5) == 0


def test_asha_judges_a_trial_among_the_trials_of_its_optimizer():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("asha", 10))
    for value in (0.5, 0.6):
        assert first_pruned_epoch(study, [value] * 10, "adam") is None
    # behind both Adam trials after the first epoch, but the first SGD trial there
    assert first_pruned_epoch(study, [0.2] * 10, "sgd") is None
    assert first_pruned_epoch(study, [0.3] * 10, "sgd") is None
    assert first_pruned_epoch(study, [0.1] * 10, "sgd") == 0


def test_hyperband_spans_the_epochs_and_none_never_prunes():
    hyperband = make_pruner("hyperband", 9)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("none", 3))
    for _ in range(6):
        tell_complete(study, [0.9, 0.9, 0.9])
    assert first_pruned_epoch(study, [0.0, 0.0, 0.0]) is None


def test_an_unknown_pruner_names_the_choices():
    with pytest.raises(ValueError, match="choose from " + ", ".join(PRUNER_NAMES)):
        make_pruner("never", 3)
