"""What a study answers beyond its best trial, through show, export and the exported config:
the fitted lr ridge, the near-optimal band, and the lr at another batch size with its rule."""

from __future__ import annotations

import dataclasses
import html
import json
import re

import optuna
import pytest
import torch
from click.testing import CliRunner

import batchlr
from batchlr.cli import main
from batchlr.errors import BatchlrError
from batchlr.objectives.training import device_name
from batchlr.search.lr_scaling import LrScaling
from batchlr.search.ridge import Ridge
from batchlr.studies.render import band_lines
from batchlr.studies.results import Band
from batchlr.studies.results.lr_figure import lr_over_batch_size
from batchlr.studies.results.transfer import transfer_lr
from batchlr.studies.store import DataFacts, StudySpec, save_data_facts
from tests.test_ridge import _grid

CHANCE_FACTS = DataFacts((3, 32, 32), 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _study(storage: str, name: str, trials, facts: DataFacts | None = CHANCE_FACTS, **spec):
    """A batchlr study of ``trials`` (made with create_trial), without training."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for key, value in StudySpec(**spec).to_attrs().items():
        study.set_user_attr(key, value)
    if facts is not None:
        save_data_facts(study._storage, name, facts)
    study.add_trials(trials)
    return study


@pytest.fixture(scope="module")
def grid_storage(tmp_path_factory) -> str:
    """A SGD grid whose best lr grows linearly with the batch, an Adam grid too small to fit,
    and the two in one study."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('answer') / 'grid.db'}"
    sgd = _grid("sgd", lambda batch: 1e-4 * batch, noise=0.01)
    _study(storage, "sgd-grid", sgd)
    few = _grid("adam", lambda batch: 1e-3, batch_sizes=[32, 64])
    _study(storage, "adam-few", few, facts=None)
    _study(storage, "both", sgd + few)
    return storage


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_show_prints_the_fitted_ridge_and_the_band(grid_storage):
    output = invoke("show", "sgd-grid", "--storage", grid_storage)
    (line,) = [line for line in output.splitlines() if line.strip().startswith("sgd: lr* =")]
    assert line.endswith(", 46 trials at batch 16 to 512: linear scaling holds")
    assert "near-optimal band: " in output and "sgd lr at batch " in output
    record = json.loads(invoke("show", "sgd-grid", "--storage", grid_storage, "--json"))
    ridge = record["ridge"]["sgd"]
    assert ridge["alpha_interval"][0] <= 1 <= ridge["alpha_interval"][1]
    assert record["band"]["best_trial"] in record["band"]["members"]


def test_a_band_at_one_batch_size_and_lr_reads_as_one_number():
    band = Band(3, (3, 7), (104, 104), {"adam": {104: (1e-3, 1.001e-3)}, "sgd": {104: (0.01, 0.1)}})
    assert band_lines(band) == [
        "near-optimal band: 2 trials the folds cannot tell from the best (trial 3), batch 104",
        "  adam lr at batch 104: 0.001",
        "  sgd lr at batch 104: 0.01 to 0.1",
    ]


def test_too_few_batch_sizes_is_one_line_and_no_fit(grid_storage):
    output = invoke("show", "adam-few", "--storage", grid_storage)
    assert (
        "  adam: no fit: it needs trials that learned at 3 batch sizes (less than a factor 1.41 "
        "apart count as one), this study has 2" in output.splitlines()
    )
    # an optimizer searched without a complete trial has its line too, in --optimizers order
    none = "no fit: it needs complete trials, it has none"
    ridge_lines = [line.split(":")[0].strip() for line in output.splitlines() if "no fit" in line]
    assert ridge_lines == ["sgd", "adam", "rmsprop"] and f"  sgd: {none}" in output
    record = json.loads(invoke("show", "adam-few", "--storage", grid_storage, "--json"))
    assert list(record["ridge"]) == ["sgd", "adam", "rmsprop"]
    assert record["ridge"]["adam"] == {"reason": record["ridge"]["adam"]["reason"]}


def test_the_report_says_what_show_says_of_each_optimizers_ridge_and_the_band(
    grid_storage, tmp_path
):
    shown = invoke("show", "both", "--storage", grid_storage).splitlines()
    start = shown.index("best lr over batch size, fitted per optimizer:")
    invoke("report", "both", "--storage", grid_storage, "--output", str(tmp_path))
    page = (tmp_path / "index.html").read_text()
    (answered,) = re.findall(r"<pre>(.*?)</pre>", page, re.DOTALL)
    assert html.unescape(answered).splitlines() == shown[start:]
    assert any(line.startswith("  adam: no fit: it needs trials") for line in shown[start:])
    assert any(line.startswith("near-optimal band: ") for line in shown[start:])


def test_the_export_carries_the_fit_and_transfers_the_lr_along_it(grid_storage, tmp_path):
    path = tmp_path / "best.json"
    invoke("export", "sgd-grid", "--storage", grid_storage, "--output", str(path))
    written = json.loads(path.read_text())
    assert written["data"]["mean"] == [0.5, 0.5, 0.5] and written["crop_padding"] is None
    assert [entry["batch_size"] for entry in written["lr_by_batch"]][2] == written["params"][
        "batch_size"
    ]
    cfg = batchlr.load_config(path)
    ridge = cfg.ridge["sgd"].ridge
    assert ridge is not None and cfg.band is not None
    inside = cfg.lr_rule(ridge.batch_range[0])
    assert inside.lr == pytest.approx(cfg.lr * (inside.batch_size / cfg.batch_size) ** ridge.alpha)
    assert inside.rule.startswith("the ridge lr ~ B^") and inside.warning is None
    beyond = cfg.lr_rule(4096)
    assert "extrapolated" in beyond.rule and "noise-scale --study sgd-grid" in beyond.warning
    # The critical batch size bounds the ridge from above: below it, no call to measure it.
    below = cfg.lr_rule(4)
    assert below.warning == "batch 4 lies outside the fitted 16 to 512"
    assert cfg.lr_for(2 * cfg.batch_size, "linear") == pytest.approx(2 * cfg.lr)
    with pytest.raises(BatchlrError, match="no measured critical batch size"):
        cfg.lr_rule(64, "noise")


def test_a_measured_noise_scale_holds_the_lr_past_the_critical_batch(grid_storage, tmp_path):
    path = tmp_path / "best.json"
    invoke("export", "sgd-grid", "--storage", grid_storage, "--output", str(path))
    cfg = dataclasses.replace(batchlr.load_config(path), noise_scale=1000.0)
    assert cfg.lr_for(8000) == pytest.approx(cfg.lr_for(1000))
    held = cfg.lr_rule(8000)
    assert "held past the critical batch size 1000" in held.rule and held.warning
    # one measured inside the fitted range: the fit holds to its end, then the lr is held
    inside = dataclasses.replace(cfg, noise_scale=298.0)
    assert inside.lr_for(513) == pytest.approx(inside.lr_for(512)) == inside.lr_for(8000)
    assert inside.lr_for(512) > inside.lr_for(298)
    assert "held past its end (the critical batch size 298 lies within it)" in (
        inside.lr_rule(8000).rule
    )
    gain = cfg.lr_rule(2 * cfg.batch_size, "noise")
    expected = (1000 / cfg.batch_size + 1) / (1000 / (2 * cfg.batch_size) + 1)
    assert gain.lr == pytest.approx(cfg.lr * expected) and "AdaScale" in gain.rule


def test_an_uncertain_exponent_warns_with_the_lrs_its_interval_allows():
    # a new user's rmsprop study: lr* ~ B^2.18 [0.09, 4.27], best lr 2.9e-4 at batch 34
    ridge = Ridge("rmsprop", 32, 3.6e-4, 2.18, (0.09, 4.27), 10, (16, 78), 4)
    rule = transfer_lr(2.9e-4, 34, "rmsprop", 68, ridge, None, LrScaling(), "s")
    ratio = 68 / 34
    assert rule.lr == pytest.approx(2.9e-4 * ratio**2.18)
    assert rule.warning is not None and "[0.09, 4.27] is wide" in rule.warning
    assert f"from {2.9e-4 * ratio**0.09:.3g} to {2.9e-4 * ratio**4.27:.3g}" in rule.warning
    narrower = dataclasses.replace(ridge, alpha_interval=(1.7, 2.6))
    assert transfer_lr(2.9e-4, 34, "rmsprop", 68, narrower, None, LrScaling(), "s").warning is None


def test_past_a_surge_peak_the_lr_is_held_as_an_upper_bound():
    # Adam's best lr falls again past its peak (Li et al. 2024): extrapolating would climb.
    ridge = Ridge("adam", 64, 2e-3, 0.5, (0.4, 0.6), 20, (16, 96), 4, surge_peak=128)
    held = transfer_lr(2e-3, 64, "adam", 1024, ridge, 5000.0, LrScaling(), "s")
    assert held.lr == pytest.approx(2e-3 * (128 / 64) ** 0.5)
    assert "held past its surge peak at batch 128" in held.rule
    assert held.warning is not None and held.warning.endswith("an upper bound")
    # between the fitted range's end and the peak the lr still rises
    rising = transfer_lr(2e-3, 64, "adam", 110, ridge, 5000.0, LrScaling(), "s")
    assert rising.lr == pytest.approx(2e-3 * (110 / 64) ** 0.5) and "held" not in rising.rule
    assert rising.warning == "batch 110 lies outside the fitted 16 to 96"


def test_without_a_fit_the_studys_scaling_rule_is_named(grid_storage, tmp_path):
    path = tmp_path / "few.json"
    invoke("export", "adam-few", "--storage", grid_storage, "--output", str(path))
    cfg = batchlr.load_config(path)
    assert cfg.ridge["adam"].ridge is None and cfg.data is None
    # at the best trial's own batch its own lr; elsewhere no rule applies unless one is forced
    own = cfg.lr_rule(cfg.batch_size)
    assert own.lr == cfg.lr and own.rule.startswith("the best trial's own")
    with pytest.raises(BatchlrError, match="fitted no lr ridge"):
        cfg.lr_for(2 * cfg.batch_size)
    written = json.loads(path.read_text())["lr_by_batch"]
    assert [entry["batch_size"] for entry in written] == [cfg.batch_size]


@pytest.fixture(scope="module")
def digits_storage(tmp_path_factory) -> str:
    """A small real study of digits: data facts stored at creation, trials at three batch sizes."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('digits') / 'digits.db'}"
    invoke(
        "run",
        "--storage",
        storage,
        "--study",
        "d",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "16:64",
        "--lr",
        "1e-3:1e-2",
        "--optimizers",
        "adam",
        "--sampler",
        "grid",
        "--grid-points",
        "batch_size=3,lr=2",
        "--n-trials",
        "6",
        "--pruner",
        "none",
        "--device",
        "cpu",
        "--quiet",
    )
    return storage


def test_throughput_times_the_band_and_the_export_keeps_it(digits_storage, tmp_path):
    record = json.loads(
        invoke(
            "throughput",
            "d",
            "--storage",
            digits_storage,
            "--device",
            "cpu",
            "--steps",
            "2",
            "--json",
        )
    )
    band = json.loads(invoke("show", "d", "--storage", digits_storage, "--json"))["band"]
    timed = [(timing["optimizer"], timing["batch_size"]) for timing in record["timings"]]
    assert timed == sorted((entry["optimizer"], entry["batch_size"]) for entry in band["lr_ranges"])
    assert all(timing["images_per_second"] > 0 for timing in record["timings"])
    best = record["recommended"]
    assert best["seconds_to_target"] == min(t["seconds_to_target"] for t in record["timings"])
    assert best["seconds_to_target"] == pytest.approx(
        best["epochs_to_target"]
        * _steps_per_epoch(digits_storage, best["batch_size"])
        * best["batch_size"]
        / best["images_per_second"]
    )
    lines = invoke(
        "throughput", "d", "--storage", digits_storage, "--device", "cpu", "--steps", "2"
    )
    assert re.search(
        r"^recommended: (sgd|adam|rmsprop) at batch \d+, lr \S+ \(the (ridge|band)",
        lines,
        re.M,
    )
    path = tmp_path / "best.yaml"
    invoke("export", "d", "--storage", digits_storage, "--output", str(path))
    cfg = batchlr.load_config(path)
    assert cfg.throughput is not None and cfg.throughput["device"] == device_name(
        torch.device("cpu")
    )
    assert cfg.throughput["device"].startswith("cpu: ") and lines.startswith(
        f"on {cfg.throughput['device']} ("
    )
    assert cfg.data is not None and cfg.data.classes == 10 and cfg.data.input_shape == (1, 8, 8)
    model = batchlr.build_model(cfg.settings.model, cfg.data.input_shape, cfg.data.classes)
    assert model(torch.zeros(2, *cfg.data.input_shape)).shape == (2, 10)


def _steps_per_epoch(storage: str, batch_size: int) -> int:
    study = optuna.load_study(study_name="d", storage=storage)
    (per_epoch,) = {
        trial.user_attrs["steps_per_epoch"]
        for trial in study.trials
        if trial.params["batch_size"] == batch_size
    }
    return per_epoch


def test_noise_scale_on_a_study_is_kept_for_its_export(digits_storage, tmp_path):
    output = invoke(
        "noise-scale",
        "--study",
        "d",
        "--storage",
        digits_storage,
        "--device",
        "cpu",
        "--small-batch",
        "16",
        "--big-batch",
        "256",
        "--repeats",
        "5",
    )
    assert "kept with study 'd'" in output
    path = tmp_path / "best.json"
    invoke("export", "d", "--storage", digits_storage, "--output", str(path))
    cfg = batchlr.load_config(path)
    assert cfg.noise_scale is not None and f"{cfg.noise_scale:.1f}" in output


def test_the_lr_figure_names_pruned_trials_only_where_the_study_has_some(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    trials = _grid("sgd", lambda batch: 1e-4 * batch, batch_sizes=[32, 64])
    study = _study(storage, "s", trials)
    assert "pruned" not in [series.name for series in lr_over_batch_size(study, StudySpec()).series]
    pruned = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params=trials[0].params,
        distributions=trials[0].distributions,
        intermediate_values={0: 0.2},
    )
    study.add_trial(pruned)
    assert "pruned" in [series.name for series in lr_over_batch_size(study, StudySpec()).series]
