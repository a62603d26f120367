"""The LR range test and the gradient noise scale: closed-form checks and the CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from batchlr.cli import main
from batchlr.cli_probes import lr_find
from batchlr.objectives.probes import (
    LrRangeTest,
    SeededLrRangeTests,
    estimate_noise_scale,
    lr_finder,
    valley,
)
from batchlr.objectives.trainer import Regime
from batchlr.studies import render


def test_noise_scale_matches_least_squares_in_closed_form():
    # y = x.w* + noise, x ~ N(0, I_D), loss (x.w - y)^2 / 2 at w = w* + d. Per-example gradients
    # (x.d - noise) x have mean G = d and covariance (|d|^2 + s^2) I + d d^T, so
    # B_simple = tr(cov) / |G|^2 = (D (|d|^2 + s^2) + |d|^2) / |d|^2.
    dims, noise, samples = 10, 1.0, 200_000
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, dims, generator=generator)
    true_weights = torch.randn(dims, generator=generator)
    targets = inputs @ true_weights + noise * torch.randn(samples, generator=generator)
    offset = 0.7 * torch.nn.functional.normalize(torch.randn(dims, generator=generator), dim=0)
    model = torch.nn.Linear(dims, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(true_weights + offset)
    squared = offset.pow(2).sum().item()
    expected = (dims * (squared + noise**2) + squared) / squared

    def squared_norm(drawn: torch.Tensor) -> float:
        model.zero_grad()
        outputs = model(inputs[drawn]).squeeze(1)
        (0.5 * (outputs - targets[drawn]).pow(2).mean()).backward()
        return model.weight.grad.pow(2).sum().item()

    regime = Regime("fp32", (), 0.0, 256, 256)
    generator = torch.Generator().manual_seed(1)
    result = estimate_noise_scale(squared_norm, samples, 8, 256, 60, generator, regime)
    assert result.noise_scale == pytest.approx(expected, rel=0.2)
    assert result.gradient_norm_squared == pytest.approx(squared, rel=0.2)


def test_valley_takes_two_thirds_down_the_longest_descent_not_a_noisy_start():
    lrs = [10.0 ** (exponent / 2) for exponent in range(-12, 1)]
    # a noisy dip at the start, then the descent from 2.4 (index 2) to 1.1 (index 10)
    losses = [2.3, 1.5, 2.4, 2.35, 2.3, 2.2, 2.0, 1.7, 1.4, 1.2, 1.1, 1.6, 3.0]
    assert valley(lrs, losses) == pytest.approx(lrs[2 + 8 * 2 // 3])
    assert valley(lrs[:4], [3.0, 2.0, 1.0, 0.5]) == pytest.approx(lrs[2])


def test_lr_find_defaults_to_the_sweep_that_lr_auto_runs():
    defaults = {param.name: param.default for param in lr_find.params}
    sweep = (defaults["start_lr"], defaults["end_lr"], defaults["lr_count"])
    assert sweep == (lr_finder.START_LR, lr_finder.END_LR, lr_finder.LR_COUNT)


def test_run_help_states_the_lr_auto_range_and_the_default_ranges_as_they_are():
    # --help is written as literals so that it needs no torch: checked against the constants.
    from batchlr.cli_run import run
    from batchlr.search.space import DEFAULT_LR_RANGES

    (help_text,) = [param.help for param in run.params if param.name == "lr"]
    low, high = lr_finder.SEARCH_RANGE
    assert f"from a {round(1 / low)}th of its LR range test's suggestion to {high:g} times it" in (
        help_text
    )
    for optimizer, (start, end) in DEFAULT_LR_RANGES.items():
        assert optimizer in help_text and f"{start:.0e}".replace("e-0", "e-") in help_text
        assert f":{end:g}" in help_text


def test_lr_find_json_and_plot_on_digits(tmp_path):
    plot = tmp_path / "lr.png"
    args = [
        "lr-find",
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--lr-count",
        "40",
        "--json",
        "--plot",
        str(plot),
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert 20 <= len(record["lrs"]) == len(record["losses"]) <= 40
    first, second = record["seeds"]
    assert (first["seed"], second["seed"]) == (0, 1) and first["suggested_lr"] in record["lrs"]
    assert record["lrs"] == sorted(record["lrs"])
    # the geometric mean of the two seeds' suggestions, and how far apart they lie
    assert record["suggested_lr"] == pytest.approx(
        math.sqrt(first["suggested_lr"] * second["suggested_lr"])
    )
    assert record["spread"] == pytest.approx(
        max(first["suggested_lr"], second["suggested_lr"])
        / min(first["suggested_lr"], second["suggested_lr"])
    )
    assert first["loss_drop"] == pytest.approx(1 - min(record["losses"]) / record["losses"][0])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _range_test(suggested_lr: float, loss_drop: float = 0.5) -> LrRangeTest:
    losses = [2.0, 2.0 * (1 - loss_drop), 3.0]
    return LrRangeTest([1e-3, 1e-2, 1e-1], losses, suggested_lr, True, None)  # type: ignore[arg-type]


def test_a_range_test_whose_seeds_disagree_more_than_3x_warns():
    steady = SeededLrRangeTests((0, 1), (_range_test(0.01), _range_test(0.02)))
    assert steady.suggested_lr == pytest.approx(math.sqrt(0.01 * 0.02)) and not steady.unsteady
    assert render.lr_test_warning(steady.loss_drop, steady.spread, "fix it") is None
    unsteady = SeededLrRangeTests((0, 1), (_range_test(0.0114), _range_test(0.00124)))
    assert unsteady.unsteady and unsteady.spread == pytest.approx(9.19, abs=0.01)
    warning = render.lr_test_warning(unsteady.loss_drop, unsteady.spread, "fix it", "adam")
    assert warning == (
        "warning: the LR range test of adam's two seeds suggest lrs 9.2x apart, so it is "
        "unsteady; fix it"
    )
    weak = SeededLrRangeTests((0, 1), (_range_test(0.01, 0.01), _range_test(0.2)))
    assert render.lr_test_warning(weak.loss_drop, weak.spread, "fix it").count("warning:") == 2


def test_the_lr_range_figure_marks_the_suggestion_lr_find_prints():
    from batchlr.studies.results import lr_range_figure

    tests = SeededLrRangeTests((0, 1), (_range_test(0.01), _range_test(0.04)))
    marked = lr_range_figure(tests, "t").series[1]
    assert marked.x == [pytest.approx(0.02)] * 2 and marked.name == "suggested lr 0.02"


def test_noise_scale_json_on_digits():
    args = [
        "noise-scale",
        "--device",
        "cpu",
        "--small-batch",
        "16",
        "--big-batch",
        "256",
        "--repeats",
        "5",
        "--json",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    critical = record["critical_batch_size"]
    assert record["noise_scale"] > 0 and critical == max(1, round(record["noise_scale"]))
    assert record["suggested_batch_range"] == [max(1, critical // 2), 2 * critical]


def test_run_with_lr_auto_searches_mostly_below_the_suggestion(sqlite_url):
    import optuna

    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "auto",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--batch-size",
        "32:128",
        "--optimizers",
        "sgd,adam",
        "--lr",
        "auto",
        "--n-trials",
        "3",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="auto", storage=sqlite_url)
    found = study.user_attrs["lr_find"]
    assert set(found) == {"sgd", "adam"} and study.user_attrs["lr"] is None
    suggested = {name: record["suggested_lr"] for name, record in found.items()}
    assert (
        f"suggested sgd {suggested['sgd']:.3g} at momentum 0.9, adam {suggested['adam']:.3g}"
        in result.output
    )
    for name, lr in suggested.items():
        assert study.user_attrs["lr_ranges"][name] == pytest.approx([lr / 30, lr * 3])
    for trial in study.trials:
        lr = suggested[trial.params["optimizer"]]
        assert lr / 30 <= trial.params["lr"] <= lr * 3
    # Resuming with --lr auto keeps the stored ranges instead of testing again.
    assert CliRunner().invoke(main, [*args[:-1], "1"], catch_exceptions=False).exit_code == 0
    assert optuna.load_study(study_name="auto", storage=sqlite_url).user_attrs["lr_find"] == found
    # and refuses a range of the user's, naming the ones the test found
    other = CliRunner().invoke(main, [*args[:-4], "--lr", "1e-3:1e-1", "--n-trials", "1"])
    assert other.exit_code == 2 and "created with --lr auto (sgd " in other.output
    # its study file measures anew where it creates the study elsewhere
    shown = CliRunner().invoke(main, ["show", "auto", "--storage", sqlite_url, "--as-config"])
    assert 'lr = "auto"' in shown.output


@pytest.mark.parametrize(
    "args",
    [
        ["lr-find", "--batch-size", "100000"],
        ["lr-find", "--start-lr", "1", "--end-lr", "0.1"],
        ["noise-scale", "--small-batch", "64", "--big-batch", "32"],
        ["lr-find", "--optimizer", "lion"],
    ],
)
def test_bad_probe_options_are_usage_errors(args):
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_lr_find_on_a_study_trains_in_its_regime(sqlite_url, monkeypatch):
    """bf16 autocast, flipped and cropped batches, the study's label smoothing: as its trials."""
    import optuna

    from batchlr.objectives.data import assign_folds, load_dataset
    from batchlr.objectives.settings import TrainingSettings
    from batchlr.objectives.training import Augmentation
    from batchlr.studies.store import StudySpec, open_storage, save_spec

    data = load_dataset("digits", Path("unused"))
    training = TrainingSettings(precision="bf16", augment=("flip", "crop"), label_smoothing=0.1)
    spec = StudySpec(folds=2, training=training)
    folds = assign_folds(data.labels.numpy(), 2, seed=0, holdout=True)
    storage = open_storage(sqlite_url, access="create")
    optuna.create_study(storage=storage, study_name="recipe", direction="maximize")
    save_spec(storage, "recipe", spec, folds, data.labels_fingerprint())

    losses, augmented = [], []
    cross_entropy = torch.nn.functional.cross_entropy

    def recorded_loss(logits, labels, **options):
        losses.append((logits.dtype, torch.is_autocast_enabled("cpu"), options))
        return cross_entropy(logits, labels, **options)

    augment = Augmentation.__call__

    def recorded_augmentation(self, batch, generator):
        augmented.append((self.flip, self.crop_padding))
        return augment(self, batch, generator)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", recorded_loss)
    monkeypatch.setattr(Augmentation, "__call__", recorded_augmentation)
    args = ["lr-find", "--study", "recipe", "--storage", sqlite_url, "--lr-count", "20"]
    result = CliRunner().invoke(main, [*args, "--batch-size", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(losses) >= 20 and len(augmented) == len(losses)
    assert all(dtype == torch.bfloat16 and autocast for dtype, autocast, _ in losses)
    assert all(options["label_smoothing"] == 0.1 for *_, options in losses)
    assert set(augmented) == {(True, 1)}  # digits are 8x8: an eighth of a side
    assert (
        "trained as study 'recipe''s trials: bf16, augment flip,crop, label smoothing 0.1, "
        "batch 32 in one pass" in result.output
    )


def test_noise_scale_says_when_its_range_exceeds_what_a_fold_can_batch():
    from batchlr.objectives.probes import NoiseScale
    from batchlr.studies import render

    result = NoiseScale(600.0, 0.01, 6.0, 32, 1024, 10, Regime("fp32", (), 0.0, 1024, 1024))
    lines = render.noise_scale(result, 0, None, largest_batch=800)
    assert "suggested batch range: 300:1200" in lines
    assert any(line.startswith("note: a fold trains on 800 samples") for line in lines)
    assert not any("note:" in line for line in render.noise_scale(result, 0, None, 2000))


def test_lr_find_on_a_study_of_fewer_images_than_its_default_batch_trains_with_them_all(
    tmp_path, sqlite_url
):
    import re

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for index in range(12):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / name / f"{index}.png")
    run = ["run", "--dataset", f"imagefolder:{tmp_path / 'imgs'}", "--storage", sqlite_url]
    created = CliRunner().invoke(
        main, [*run, "--study", "c", "--batch-size", "4:8", "--n-trials", "1", "--quiet"]
    )
    assert created.exit_code == 0, created.output
    found = CliRunner().invoke(
        main, ["lr-find", "--study", "c", "--storage", sqlite_url, "--lr-count", "20"]
    )
    assert found.exit_code == 0, found.output  # it asked for a batch of 64 and stopped
    (batch,) = re.findall(r", batch (\d+) in one pass", found.output)
    assert int(batch) < 64
