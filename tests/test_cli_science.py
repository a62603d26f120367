"""The batch-size science options of `batchlr run`, end to end on digits with tiny settings."""

import json

import optuna
import pytest
from click.testing import CliRunner

import batchlr
from batchlr.cli import main
from batchlr.objectives.micro_batches import MicroBatching

TINY = ["--dataset", "digits", "--folds", "2", "--device", "cpu", "--batch-size", "32:128"]


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_lr_scaling_searches_base_lr_and_exports_the_rule(sqlite_url, tmp_path):
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "lin",
        *TINY,
        "--epochs",
        "1",
        "--n-trials",
        "3",
        "--lr-scaling",
        "linear",
        "--reference-batch-size",
        "64",
        "--warmup",
        "0.5",
        "--schedule",
        "cosine",
    )
    study = optuna.load_study(study_name="lin", storage=sqlite_url)
    for trial in study.trials:
        assert set(trial.params) >= {"base_lr", "batch_size"} and "lr" not in trial.params
        assert trial.user_attrs["lr"] == pytest.approx(
            trial.params["base_lr"] * trial.params["batch_size"] / 64
        )
    invoke("export", "lin", "--storage", sqlite_url, "--output", str(tmp_path / "lin.yaml"))
    cfg = batchlr.load_config(tmp_path / "lin.yaml")
    scaling = cfg.settings.space.lr_scaling
    assert (scaling.rule, scaling.reference_batch_size) == ("linear", 64)
    # Resuming with the same B0 alone is no change; another B0 is.
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "lin",
        "--reference-batch-size",
        "64",
        "--n-trials",
        "1",
    )
    other = CliRunner().invoke(
        main, ["run", "--storage", sqlite_url, "--study", "lin", "--reference-batch-size", "32"]
    )
    assert other.exit_code == 2 and "created with --reference-batch-size 64, not 32" in other.output
    assert (cfg.settings.training.schedule, cfg.settings.training.warmup) == ("cosine", 0.5)
    assert cfg.lr == pytest.approx(cfg.params["base_lr"] * cfg.batch_size / 64)
    assert cfg.lr_for(2 * cfg.batch_size) == pytest.approx(2 * cfg.lr)


def test_noise_lr_scaling_measures_the_noise_scale_once_and_scales_by_its_gain(
    sqlite_url, tmp_path
):
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "gain",
        *TINY,
        "--epochs",
        "1",
        "--n-trials",
        "3",
        "--lr-scaling",
        "noise",
        "--reference-batch-size",
        "64",
        "--optimizers",
        "sgd,adam",
    )
    study = optuna.load_study(study_name="gain", storage=sqlite_url)
    noise = study.user_attrs["noise_scale"]
    assert noise > 0 and study.user_attrs["batchlr_format"] == 6
    for trial in study.trials:
        batch = trial.params["batch_size"]
        gain = (noise / 64 + 1) / (noise / batch + 1)
        factor = gain if trial.params["optimizer"] == "sgd" else gain**0.5
        assert trial.user_attrs["lr"] == pytest.approx(trial.params["base_lr"] * factor)
    # A resumed run keeps the measured noise scale instead of measuring again.
    invoke("run", "--storage", sqlite_url, "--study", "gain", "--n-trials", "1")
    assert (
        optuna.load_study(study_name="gain", storage=sqlite_url).user_attrs["noise_scale"] == noise
    )
    invoke("export", "gain", "--storage", sqlite_url, "--output", str(tmp_path / "gain.json"))
    cfg = batchlr.load_config(tmp_path / "gain.json")
    assert cfg.settings.space.lr_scaling.noise_scale == noise
    assert "AdaScale gain of the noise scale" in cfg.lr_rule(2 * cfg.batch_size, "noise").rule


def test_step_budget_is_stored_and_recorded(sqlite_url):
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "steps",
        *TINY,
        "--budget",
        "steps",
        "--steps",
        "20",
        "--n-trials",
        "1",
    )
    # Resuming with the same settings, spelled differently: --steps implies the step budget,
    # and the optimizers are a set.
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "steps",
        "--steps",
        "20",
        "--optimizers",
        "rmsprop,adam,sgd",
        "--n-trials",
        "1",
    )
    study = optuna.load_study(study_name="steps", storage=sqlite_url)
    assert len(study.trials) == 2
    assert study.user_attrs["budget"] == "steps" and study.user_attrs["steps"] == 20
    for trial in study.trials:
        assert trial.user_attrs["optimizer_steps"] == 20
        assert trial.user_attrs["samples_seen"] == 20 * trial.params["batch_size"]


def test_accuracy_time_study_shows_a_pareto_front_and_exports_the_fastest_close_trial(
    sqlite_url, tmp_path
):
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "pareto",
        *TINY,
        "--epochs",
        "2",
        "--n-trials",
        "4",
        "--objectives",
        "accuracy,time",
        "--max-micro-batch",
        "40",
    )
    study = optuna.load_study(study_name="pareto", storage=sqlite_url)
    assert [direction.name for direction in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "train_seconds"]
    report = json.loads(invoke("show", "pareto", "--storage", sqlite_url, "--json").output)
    assert {row["number"] for row in report["pareto"]} == {
        trial.number for trial in study.best_trials
    }
    assert "Pareto front" in invoke("show", "pareto", "--storage", sqlite_url).output

    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda trial: trial.values[0])
    delta = 0.2
    close = [trial for trial in complete if trial.values[0] >= best.values[0] - delta]
    fastest = min(close, key=lambda trial: trial.user_attrs["train_seconds"])
    output = tmp_path / "fast.json"
    invoke(
        "export",
        "pareto",
        "--pick",
        "fastest-within",
        str(delta),
        "--storage",
        sqlite_url,
        "--output",
        str(output),
    )
    assert batchlr.load_config(output).trial == fastest.number
    assert all(
        trial.user_attrs["micro_batch"] == MicroBatching(40).size(trial.params["batch_size"])
        for trial in complete
    )


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--budget", "steps"],
        ["run", "--budget", "epochs", "--steps", "10"],
        ["run", "--max-micro-batch", "0"],
        ["run", "--lr-scaling", "cubic"],
        ["export", "s", "--pick", "fastest-within", "--output", "x.json"],
        ["export", "s", "0.1", "--output", "x.json"],
    ],
)
def test_bad_science_options_are_usage_errors(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_auto_micro_batch_is_found_once_and_stored_on_the_study(sqlite_url):
    args = [
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "auto-mb",
        *TINY,
        "--epochs",
        "1",
        "--max-micro-batch",
        "auto",
    ]
    invoke(*args, "--n-trials", "1")
    study = optuna.load_study(study_name="auto-mb", storage=sqlite_url)
    # The CPU is not probed (running out of memory there ends the process): the cap is the largest batch.
    assert study.user_attrs["max_micro_batch"] == 128
    study.set_user_attr("max_micro_batch", 40)  # as if a GPU probe had found 40
    invoke(*args, "--n-trials", "1")
    invoke(*args[:-2], "--n-trials", "1")  # resumed without --max-micro-batch: the stored cap holds
    for trial in optuna.load_study(study_name="auto-mb", storage=sqlite_url).trials[-2:]:
        assert trial.user_attrs["micro_batch"] == MicroBatching(40).size(trial.params["batch_size"])


def test_a_grid_study_with_grid_points_runs_every_point_and_keeps_them(tmp_path):
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    common = [
        "run",
        "--storage",
        storage,
        "--study",
        "g",
        "--device",
        "cpu",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--optimizers",
        "adam",
        "--quiet",
    ]
    refused = CliRunner().invoke(main, [*common, "--grid-points", "lr=3"])
    assert (
        refused.exit_code == 2
        and "--grid-points goes with --sampler grid, not ridge" in refused.output
    )
    created = CliRunner().invoke(
        main,
        [
            *common,
            "--sampler",
            "grid",
            "--grid-points",
            "lr=3,batch_size=2",
            "--batch-size",
            "32:128",
            "--lr",
            "1e-3:1e-1",
            "--n-trials",
            "10",
        ],
    )
    assert created.exit_code == 0, created.output
    trials = optuna.load_study(study_name="g", storage=storage).trials
    assert sorted(
        (trial.params["batch_size"], round(trial.params["lr"], 6)) for trial in trials
    ) == [(size, lr) for size in (32, 128) for lr in (0.001, 0.01, 0.1)]
    shown = CliRunner().invoke(main, ["show", "g", "--storage", storage, "--as-config"])
    assert 'grid_points = "lr=3,batch_size=2"' in shown.output


def test_a_grid_study_resumes_with_another_sampler_without_its_grid_points(tmp_path):
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    common = [
        "run",
        "--storage",
        storage,
        "--study",
        "g",
        "--device",
        "cpu",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--optimizers",
        "adam",
        "--quiet",
        "--n-trials",
        "1",
    ]
    assert (
        CliRunner().invoke(main, [*common, "--sampler", "grid", "--grid-points", "lr=3"]).exit_code
        == 0
    )
    resumed = CliRunner().invoke(main, [*common, "--sampler", "tpe"])
    assert resumed.exit_code == 0, resumed.output
