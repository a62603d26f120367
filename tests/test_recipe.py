"""Training as users train: uint8 images normalised on the device, augmentation, weight decay,
label smoothing, Nesterov momentum and AdamW, stored with the study and exported."""

import json
import math

import numpy as np
import optuna
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import batchlr
from batchlr.cli import main
from batchlr.errors import BatchlrError, BatchlrUsageError, SettingError
from batchlr.objectives.micro_batches import MicroBatching
from batchlr.objectives.settings import TrainingSettings, parse_augment, parse_image_size
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import (
    Augmentation,
    DeviceImages,
    Execution,
    FoldGroup,
    Normalisation,
    SeparateFolds,
    make_optimizer,
)
from batchlr.search.space import Hyperparameters, SearchSpace
from batchlr.search.weight_decay import WeightDecay, parse_weight_decay


def _images(count: int = 64, channels: int = 3, side: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (count, channels, side, side), generator=generator, dtype=torch.uint8
    )


def test_uint8_images_normalised_on_the_device_equal_the_float_path():
    images = _images()
    # what batchlr stored before: the whole set as floats, standardised
    floats = images.double() / 255
    mean, std = floats.mean(dim=(0, 2, 3), keepdim=True), floats.std(dim=(0, 2, 3), keepdim=True)
    expected = ((floats - mean) / std).float()
    data = DeviceImages(
        images, torch.zeros(64, dtype=torch.long), Normalisation.of(images, np.arange(64))
    )
    indices = torch.tensor([3, 0, 63, 17])
    assert data.images.dtype == torch.uint8
    torch.testing.assert_close(data.inputs(indices), expected[indices], rtol=1e-5, atol=1e-5)


def test_normalisation_reads_only_the_images_it_is_given():
    images = _images()
    kept = np.arange(48)
    changed = images.clone()
    changed[48:] = 255  # the hold-out: it must not move the statistics
    assert Normalisation.of(changed, kept) == Normalisation.of(images, kept)
    assert Normalisation.of(changed, np.arange(64)) != Normalisation.of(images, np.arange(64))


def _window_of(augmented: torch.Tensor, original: torch.Tensor, padding: int) -> bool:
    """Whether ``augmented`` is a crop of the reflection-padded ``original``, flipped or not."""
    padded = torch.nn.functional.pad(original[None], (padding,) * 4, mode="reflect")[0]
    height, width = original.shape[1:]
    for candidate in (padded, padded.flip(2)):
        for top in range(2 * padding + 1):
            for left in range(2 * padding + 1):
                if torch.equal(candidate[:, top : top + height, left : left + width], augmented):
                    return True
    return False


def test_augmentation_changes_training_batches_and_stays_a_flipped_crop():
    images = _images(count=32)
    data = DeviceImages(
        images,
        torch.zeros(32, dtype=torch.long),
        Normalisation((0.5,) * 3, (0.25,) * 3),
        Augmentation(True, 2),
    )
    indices = torch.arange(32)
    generator = torch.Generator().manual_seed(0)
    (first,), (second,) = (
        data.training_inputs(indices[None], [generator]),
        data.training_inputs(indices[None], [generator]),
    )
    plain = data.inputs(indices)
    assert (first != plain).flatten(1).any(dim=1).sum() >= 24  # a few draws are the identity
    assert not torch.equal(first, second)  # fresh draws every batch
    assert all(_window_of(first[index], plain[index], 2) for index in range(32))


def test_flips_alone_mirror_about_half_the_images():
    images = _images(count=400, side=4)
    data = DeviceImages(
        images,
        torch.zeros(400, dtype=torch.long),
        Normalisation((0.5,) * 3, (0.25,) * 3),
        Augmentation(flip=True),
    )
    indices = torch.arange(400)
    (augmented,), plain = (
        data.training_inputs(indices[None], [torch.Generator().manual_seed(1)]),
        data.inputs(indices),
    )
    flipped = (augmented == plain.flip(3)).flatten(1).all(dim=1)
    assert ((augmented == plain).flatten(1).all(dim=1) | flipped).all()
    assert 150 < flipped.sum() < 250


def test_validation_is_never_augmented():
    images = _images(count=40)
    labels = torch.arange(40) % 3
    normalisation = Normalisation.of(images, np.arange(40))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    plain = DeviceImages(images, labels, normalisation)
    augmented = DeviceImages(images, labels, normalisation, Augmentation(True, 3))
    indices = torch.arange(40)
    optimizer = torch.optim.SGD(model.parameters())
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer)
    execution = Execution(torch.device("cpu"))
    group = FoldGroup(
        SeparateFolds([model]),
        optimizer,
        scheduler,
        [],
        [indices],
        [1],
        execution,
        micro_batching=MicroBatching(7),
    )
    trainer = Trainer(augmented, lambda: model, TrainingSettings(), execution)
    assert (
        trainer.evaluate(group, [indices]).item()
        == trainer.evaluate(group, [indices], plain).item()
    )


def test_crop_padding_defaults_to_an_eighth_and_must_be_smaller_than_the_image():
    settings = TrainingSettings(augment=("crop",))
    assert settings.crop_padding_for((3, 32, 32)) == 4 and settings.crop_padding_for((1, 8, 8)) == 1
    assert TrainingSettings(augment=("flip",)).crop_padding_for((3, 32, 32)) == 0
    with pytest.raises(BatchlrUsageError, match="smaller than the 8x8"):
        TrainingSettings(augment=("crop",), crop_padding=8).crop_padding_for((1, 8, 8))
    with pytest.raises(BatchlrUsageError, match=r"crop_padding 2: goes with augment crop"):
        TrainingSettings(augment=("flip",), crop_padding=2)


@pytest.mark.parametrize(
    ("text", "expected"), [("none", ()), ("crop,flip", ("flip", "crop")), ("FLIP", ("flip",))]
)
def test_parse_augment(text, expected):
    assert parse_augment(text) == expected


def test_an_augment_that_names_nothing_is_refused_by_the_parser_and_unknown_names_by_the_setting():
    with pytest.raises(BatchlrUsageError):
        parse_augment(" , ")
    for text in ("rotate", "flip,none"):
        with pytest.raises(SettingError, match=r"^augment "):
            TrainingSettings(augment=parse_augment(text))


def test_parse_image_size_and_weight_decay():
    assert parse_image_size("32") == (32, 32) and parse_image_size("48x64") == (48, 64)
    assert parse_weight_decay("0") == (0.0, 0.0) and parse_weight_decay("1e-5:1e-2") == (1e-5, 1e-2)
    for bad in ("32x", "-4", "1:2", "1x2x3"):
        with pytest.raises(BatchlrUsageError):
            parse_image_size(bad)
    for bad in ("1:2:3", "a", "1e-5:"):
        with pytest.raises(BatchlrUsageError):
            parse_weight_decay(bad)
    # values are the setting's to judge, in one place, whoever makes it
    for low, high in ((-1.0, -1.0), (1e-2, 1e-5), (math.nan, math.nan), (0.0, 1e-3)):
        with pytest.raises(SettingError, match=r"^weight_decay "):
            WeightDecay(low, high)


def test_weight_decay_nesterov_and_adamw_reach_the_optimizer():
    model = nn.Linear(4, 2)
    sgd = make_optimizer(
        Hyperparameters(32, 0.1, "sgd", 0.9, weight_decay=5e-4, nesterov=True), model.parameters()
    )
    assert sgd.param_groups[0]["weight_decay"] == 5e-4 and sgd.param_groups[0]["nesterov"] is True
    # Nesterov needs momentum: a trial that drew momentum 0 trains plain SGD rather than failing.
    plain = make_optimizer(Hyperparameters(32, 0.1, "sgd", 0.0, nesterov=True), model.parameters())
    assert plain.param_groups[0]["nesterov"] is False
    adamw = make_optimizer(
        Hyperparameters(32, 1e-3, "adamw", weight_decay=0.05), model.parameters()
    )
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.05


def test_a_searched_weight_decay_is_a_param_and_none_is_a_choice():
    space = SearchSpace(optimizers=("adamw",), weight_decay=WeightDecay(1e-5, 1e-2, try_none=True))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(30):
        trial = study.ask()
        hyperparameters = space.suggest(trial)
        drawn.append((trial.params, hyperparameters))
        study.tell(trial, 0.5)
    decays = {hyperparameters.weight_decay for _, hyperparameters in drawn}
    assert 0.0 in decays and all(decay == 0 or 1e-5 <= decay <= 1e-2 for decay in decays)
    for params, hyperparameters in drawn:
        assert Hyperparameters.from_params(params, space) == hyperparameters
        assert ("weight_decay" in params) == (hyperparameters.weight_decay > 0)
    with pytest.raises(BatchlrError, match="weight_decay"):
        Hyperparameters.from_params(
            {"optimizer": "adamw", "batch_size": 16, "lr": 0.1, "use_weight_decay": True}, space
        )


def test_a_fixed_weight_decay_is_no_param():
    space = SearchSpace(weight_decay=WeightDecay(5e-4, 5e-4))
    hyperparameters = space.suggest(
        optuna.trial.FixedTrial({"optimizer": "adam", "batch_size": 32, "lr": 0.01})
    )
    assert hyperparameters.weight_decay == 5e-4
    assert "weight_decay" not in space.grid()


def test_weight_decay_ranges_that_cannot_be_searched_are_refused():
    with pytest.raises(BatchlrUsageError, match="cannot start at 0"):
        WeightDecay(0.0, 1e-2)
    with pytest.raises(BatchlrUsageError, match="goes with a searched"):
        WeightDecay(1e-4, 1e-4, try_none=True)


RECIPE = [
    "--augment",
    "flip,crop",
    "--crop-padding",
    "1",
    "--weight-decay",
    "1e-5:1e-2",
    "--label-smoothing",
    "0.1",
    "--optimizers",
    "sgd,adamw",
    "--nesterov",
]


@pytest.fixture(scope="module")
def recipe_study(tmp_path_factory):
    """A two-trial digits study with the whole recipe, exported."""
    folder = tmp_path_factory.mktemp("recipe")
    storage = f"sqlite:///{folder / 'studies.db'}"
    run = [
        "run",
        "--storage",
        storage,
        "--study",
        "recipe",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--n-trials",
        "2",
        "--device",
        "cpu",
        "--quiet",
        *RECIPE,
    ]
    result = CliRunner().invoke(main, run)
    assert result.exit_code == 0, result.output
    exported = folder / "best.json"
    result = CliRunner().invoke(
        main, ["export", "recipe", "--storage", storage, "--output", str(exported)]
    )
    assert result.exit_code == 0, result.output
    return storage, exported


def test_the_recipe_is_stored_and_every_trial_draws_a_weight_decay(recipe_study):
    storage, _ = recipe_study
    study = optuna.load_study(study_name="recipe", storage=storage)
    attrs = study.user_attrs
    assert (
        attrs["augment"] == ["flip", "crop"]
        and attrs["crop_padding"] == 1
        and attrs["label_smoothing"] == 0.1
    )
    assert attrs["weight_decay"] == [1e-5, 1e-2] and attrs["nesterov"] is True
    assert all(1e-5 <= trial.params["weight_decay"] <= 1e-2 for trial in study.trials)
    assert {trial.params["optimizer"] for trial in study.trials} <= {"sgd", "adamw"}


def test_the_export_reproduces_the_recipe(recipe_study):
    _, exported = recipe_study
    config = batchlr.load_config(exported)
    record = json.loads(exported.read_text())
    assert config.weight_decay == record["params"]["weight_decay"]
    optimizer = config.make_optimizer(nn.Linear(4, 2).parameters())
    assert optimizer.param_groups[0]["weight_decay"] == config.weight_decay
    assert type(optimizer) is (
        torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.SGD
    )
    if config.optimizer == "sgd":
        assert optimizer.param_groups[0]["nesterov"] is (config.momentum > 0)
    assert config.make_loss().label_smoothing == 0.1
    assert (
        config.settings.training.augment == ("flip", "crop")
        and config.settings.training.crop_padding == 1
    )


def test_resuming_with_another_recipe_is_refused_and_as_config_reproduces_it(
    recipe_study, tmp_path
):
    storage, _ = recipe_study
    result = CliRunner().invoke(
        main,
        ["run", "--storage", storage, "--study", "recipe", "--augment", "flip", "--n-trials", "1"],
    )
    assert result.exit_code == 2 and "created with --augment flip,crop, not flip" in result.output
    shown = CliRunner().invoke(main, ["show", "recipe", "--storage", storage, "--as-config"])
    assert shown.exit_code == 0, shown.output
    assert 'augment = "flip,crop"' in shown.output and 'weight_decay = "1e-05:0.01"' in shown.output
    study_file = tmp_path / "recipe.toml"
    study_file.write_text(shown.output)
    result = CliRunner().invoke(
        main, ["run", "--config", str(study_file), "--n-trials", "1", "--device", "cpu", "--quiet"]
    )
    assert result.exit_code == 0, result.output
