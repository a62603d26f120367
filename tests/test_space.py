import optuna
import pytest

from batchlr.errors import BatchlrUsageError, SettingError
from batchlr.search.grid import grid_point_counts, parse_grid_points
from batchlr.search.space import (
    Hyperparameters,
    SearchSpace,
    parse_optimizers,
    parse_range,
)


def test_parse_range_reads_min_max():
    assert parse_range("16:512", int) == (16, 512)
    assert parse_range("1e-4:1", float) == (1e-4, 1.0)


@pytest.mark.parametrize("text", ["512:16", "0:16", "-1:4", "16", "a:b", "1:2:3", "1:inf"])
def test_parse_range_rejects_bad_ranges(text):
    with pytest.raises(BatchlrUsageError):
        parse_range(text, float if "inf" in text else int)


def test_parse_optimizers_validates_and_dedupes():
    assert parse_optimizers("Adam, sgd,adam") == ("adam", "sgd")
    with pytest.raises(BatchlrUsageError, match="lion"):
        parse_optimizers("sgd,lion")


def test_momentum_is_searched_only_for_sgd_and_rmsprop():
    space = SearchSpace()
    adam = space.suggest(
        optuna.trial.FixedTrial({"optimizer": "adam", "batch_size": 32, "lr": 0.01})
    )
    sgd = space.suggest(
        optuna.trial.FixedTrial({"optimizer": "sgd", "batch_size": 32, "lr": 0.01, "momentum": 0.9})
    )
    assert adam.momentum is None
    assert sgd == Hyperparameters(batch_size=32, lr=0.01, optimizer="sgd", momentum=0.9)


def test_clip_batch_size_caps_max_and_rejects_min_above_data():
    space = SearchSpace(batch_size=(16, 512))
    assert space.clip_batch_size(300).batch_size == (16, 300)
    with pytest.raises(BatchlrUsageError, match="at most 10"):
        space.clip_batch_size(10)


def test_grid_uses_powers_of_two_and_decades_inside_the_ranges():
    grid = SearchSpace(batch_size=(24, 300), lr=(3e-4, 0.5), optimizers=("sgd",)).grid()
    assert grid["batch_size"] == [24, 32, 64, 128, 256, 300]
    assert grid["lr"] == pytest.approx([3e-4, 1e-3, 1e-2, 1e-1, 0.5])


def test_grid_points_space_lr_and_batch_size_evenly_in_log():
    grid = SearchSpace(batch_size=(16, 512), lr=(1e-4, 1.0)).grid(
        grid_point_counts(parse_grid_points("lr=9, batch_size=6"))
    )
    assert grid["batch_size"] == [16, 32, 64, 128, 256, 512]
    assert grid["lr"] == pytest.approx([10 ** (-4 + index / 2) for index in range(9)])
    # whole, distinct
    assert SearchSpace(batch_size=(16, 20)).grid({"batch_size": 10})["batch_size"] == [
        16,
        17,
        18,
        19,
        20,
    ]
    # decades without --grid-points
    # over the hull of the optimizers' ranges: sgd's 1e-3:1 and adam's 1e-5:0.1
    assert SearchSpace().grid()["lr"] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


@pytest.mark.parametrize("text", ["lr=1", "momentum=4", "lr", "lr=x", "lr=5000"])
def test_bad_grid_points_are_usage_errors(text):
    with pytest.raises(SettingError, match=f"grid_points {text}: give NAME=N pairs") as raised:
        parse_grid_points(text)
    assert raised.value.key == "grid_points"


def test_noise_scaling_is_linear_far_below_the_noise_scale_and_flat_far_above_it():
    from batchlr.search.lr_scaling import LrScaling

    scaling = LrScaling("noise", 64, noise_scale=10_000.0)
    assert scaling.lr(1.0, 128, "sgd") == pytest.approx(2.0, rel=0.02)
    assert scaling.lr(1.0, 128, "adam") == pytest.approx(2.0**0.5, rel=0.01)
    flat = LrScaling("noise", 10_000, noise_scale=100.0)
    assert flat.lr(1.0, 20_000, "sgd") == pytest.approx(1.0, rel=0.01)
    with pytest.raises(ValueError, match="before it is measured"):
        LrScaling("noise", 64).lr(1.0, 128, "sgd")


def test_each_optimizer_draws_lr_from_its_own_range_and_lr_overrides_all():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace(optimizers=("sgd", "adam"))
    for _ in range(12):
        trial = study.ask()
        drawn = space.suggest(trial)
        distribution = trial.distributions["lr"]
        expected = {"sgd": (1e-3, 1.0), "adam": (1e-5, 0.1)}[drawn.optimizer]
        assert (distribution.low, distribution.high) == expected
        assert expected[0] <= drawn.lr <= expected[1]
        study.tell(trial, drawn.lr)
    assert {trial.params["optimizer"] for trial in study.trials} == {"sgd", "adam"}
    shared = SearchSpace(lr=(0.5, 0.6), optimizers=("sgd", "adam"))
    assert shared.lr_range("adam") == shared.lr_range("sgd") == (0.5, 0.6)
