"""Using the results: study files, reports, refit, the dashboard note and make_scheduler."""

import json

import optuna
import optuna_dashboard
import pytest
import torch
from click.testing import CliRunner

import batchlr
from batchlr.cli import main
from batchlr.errors import BatchlrError
from batchlr.studies.store import load_spec, mask_command_line, open_storage


def invoke(*args: str, expect: int = 0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="module")
def cfg_study(tmp_path_factory):
    """The study of the issue's TOML file: digits, 2 folds, 3 epochs, 5 trials, seed 4."""
    root = tmp_path_factory.mktemp("cfg")
    storage = f"sqlite:///{root / 'cfg.db'}"
    config = root / "study.toml"
    config.write_text(
        f'study = "cfg"\nstorage = "{storage}"\ndataset = "digits"\nfolds = 2\nepochs = 3\n'
        'n_trials = 5\ndevice = "cpu"\nseed = 4\nbatch_size = [32, 256]\n'
    )
    invoke("run", "--config", str(config))
    return root, storage, config


def test_a_study_file_sets_every_option(cfg_study):
    _, storage, _ = cfg_study
    study = optuna.load_study(study_name="cfg", storage=storage)
    assert (
        len(study.trials) == 5
        and study.user_attrs["seed"] == 4
        and study.user_attrs["batch_size"] == [32, 256]
    )
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert len(trial.user_attrs["fold_scores"]) == 2


def test_flags_override_the_study_file_and_as_config_reproduces_it(cfg_study, tmp_path):
    _, storage, _config = cfg_study
    shown = invoke("show", "cfg", "--storage", storage, "--as-config").output
    assert 'study = "cfg"' in shown and "folds = 2" in shown and 'batch_size = "32:256"' in shown
    assert 'sampler = "ridge"' in shown and 'pruner = "asha"' in shown and "data_dir = " in shown
    again = tmp_path / "again.toml"
    again.write_text(shown)
    invoke("run", "--config", str(again), "--n-trials", "1", "--device", "cpu")
    assert len(optuna.load_study(study_name="cfg", storage=storage).trials) == 6
    # The environment ranks below the file: only flags override it.
    elsewhere = tmp_path / "env.db"
    args = ["run", "--config", str(again), "--n-trials", "1"]
    result = CliRunner().invoke(main, args, env={"BATCHLR_STORAGE": f"sqlite:///{elsewhere}"})
    assert result.exit_code == 0, result.output
    assert (
        len(optuna.load_study(study_name="cfg", storage=storage).trials) == 7
        and not elsewhere.exists()
    )


def test_unknown_keys_in_a_study_file_are_usage_errors(tmp_path):
    config = tmp_path / "typo.toml"
    config.write_text("n_trial = 5\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2 and "n_trial" in result.output and "Traceback" not in result.output


def test_report_writes_html_with_plotly_and_pngs(cfg_study, tmp_path):
    _, storage, _ = cfg_study
    invoke("report", "cfg", "--storage", storage, "--output", str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert "plotly" in page and "best CV accuracy" in page and "standard error over" in page
    titles = [
        "Learning rate over batch size",
        "Learning curves of the best trials",
        "Accuracy over training time",
        "Fold scores of the best trials",
        "Search progress",
        "Accuracy by optimizer",
    ]
    assert all(title in page for title in titles)
    pngs = sorted(path.name for path in (tmp_path / "report").glob("*.png"))
    assert pngs == [
        "a-lr-over-batch-size.png",
        "b-learning-curves.png",
        "c-accuracy-over-time.png",
        "d-fold-spread.png",
        "e-best-so-far.png",
        "f-accuracy-by-optimizer.png",
    ]
    assert all((tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG" for png in pngs)


def test_after_refit_the_report_gives_the_test_accuracy_and_why_it_differs(cfg_study, tmp_path):
    _, storage, _ = cfg_study
    invoke(
        "refit", "cfg", "--storage", storage, "--output", str(tmp_path / "m.pt"), "--device", "cpu"
    )
    invoke("report", "cfg", "--storage", storage, "--output", str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert "test accuracy (refit)" in page and "binomial standard error" in page
    assert "each CV model trained on" in page and "so the CV estimate is pessimistic" in page


def test_refit_scores_the_hold_out_and_saves_loadable_weights(cfg_study, tmp_path):
    _, storage, _ = cfg_study
    weights = tmp_path / "model.pt"
    output = invoke(
        "refit", "cfg", "--storage", storage, "--output", str(weights), "--device", "cpu"
    ).output
    study = optuna.load_study(study_name="cfg", storage=storage)
    accuracy = study.user_attrs["test_accuracy"]
    assert isinstance(accuracy, float) and accuracy > 0.5 and f"{accuracy:.4f}" in output
    assert study.user_attrs["refit_trial"] == study.best_trial.number
    content = torch.load(weights, weights_only=True)
    assert content["info"]["test_accuracy"] == accuracy and all(
        isinstance(tensor, torch.Tensor) for tensor in content["state_dict"].values()
    )


def test_the_dashboard_note_describes_the_study_without_passwords(cfg_study):
    _, storage, _ = cfg_study
    note = optuna_dashboard.get_note(optuna.load_study(study_name="cfg", storage=storage))
    assert "digits" in note and "2-fold" in note and "batchlr run --config" in note
    # The images each fold's model trains on, not those of the whole data set.
    _, folds, _ = load_spec(open_storage(storage, access="read"), "cfg")
    train, validate = ({len(folds.train_val(fold)[part]) for fold in range(2)} for part in (0, 1))
    # digits' 1,437 images outside the hold-out, in two folds
    assert train == validate == {718, 719}
    assert (
        "Training split of digits: 1,797 images of shape" in note
        and "2-fold cross-validation on 1,437 of them: "
        "each fold's model trains on 718 to 719 and validates on 718 to 719"
        in note
    )
    assert f"; {len(folds.holdout()):,} held out for the test score of `batchlr refit`" in note
    masked = mask_command_line(
        [
            "batchlr",
            "run",
            "--storage=postgresql://u:secret@h/db?x=1",
            "--storage",
            "postgresql://u:pw@h/d",
        ]
    )
    assert "secret" not in masked and "pw@" not in masked and "x=1" in masked


def test_make_scheduler_follows_the_exported_schedule(tmp_path):
    record = {
        "study": "s",
        "trial": 0,
        "value": 0.9,
        "metric": "accuracy",
        "direction": "maximize",
        "params": {"batch_size": 32, "lr": 0.1, "optimizer": "sgd", "momentum": 0.9},
        "fold_scores": [0.9],
        "dataset": "digits",
        "model": "convnet",
        "epochs": 2,
        "folds": 2,
        "versions": {},
        "schedule": "cosine",
        "warmup": 1.0,
    }
    path = tmp_path / "best.json"
    path.write_text(json.dumps(record))
    cfg = batchlr.load_config(path)
    optimizer = cfg.make_optimizer(torch.nn.Linear(2, 1).parameters())
    with pytest.raises(BatchlrError, match="steps_per_epoch"):
        cfg.make_scheduler(optimizer, steps=20)
    scheduler = cfg.make_scheduler(optimizer, steps=20, steps_per_epoch=10)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) and lrs[-1] < 0.01


def test_export_writes_the_format_its_name_or_format_says_and_refuses_a_guess(cfg_study, tmp_path):
    _, storage, _ = cfg_study
    refused = invoke(
        "export", "cfg", "--storage", storage, "--output", str(tmp_path / "best.txt"), expect=2
    )
    assert (
        "name a .json, .yaml or .yml file, or give --format json or yaml" in refused.output
        and not (tmp_path / "best.txt").exists()
    )
    invoke(
        "export",
        "cfg",
        "--storage",
        storage,
        "--output",
        str(tmp_path / "best.txt"),
        "--format",
        "yaml",
    )
    assert (tmp_path / "best.txt").read_text().startswith("study: cfg") and batchlr.load_config(
        tmp_path / "best.txt"
    ).study == "cfg"
    invoke(
        "export",
        "cfg",
        "--storage",
        storage,
        "--output",
        str(tmp_path / "best.cfg"),
        "--format",
        "json",
    )
    assert json.loads((tmp_path / "best.cfg").read_text())["study"] == "cfg"


def test_log_axes_have_few_plain_labels():
    from batchlr.studies.results import log_ticks, tick_label

    assert [tick_label(tick) for tick in log_ticks([16, 512], whole=True)] == [
        "16",
        "32",
        "64",
        "128",
        "256",
        "512",
    ]
    assert [tick_label(tick) for tick in log_ticks([1e-4, 0.9])] == [
        "1e-4",
        "1e-3",
        "0.01",
        "0.1",
        "1",
    ]
    assert [tick_label(tick) for tick in log_ticks([1e-3, 8e-3])] == [
        "1e-3",
        "2e-3",
        "5e-3",
        "0.01",
    ]
    assert len(log_ticks([1, 1e12])) <= 8 and len(log_ticks([1, 2**20], whole=True)) <= 8


def _study_of_fold_scores(
    storage: str, scores: list[list[float]], name: str = "folds"
) -> optuna.Study:
    """A batchlr study made without training: a complete trial per list of fold scores, the first best."""
    from batchlr.studies.store import StudySpec

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for key, value in StudySpec().to_attrs().items():
        study.set_user_attr(key, value)
    distributions = {
        "optimizer": optuna.distributions.CategoricalDistribution(["adam"]),
        "batch_size": optuna.distributions.IntDistribution(16, 512, log=True),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
    }
    for index, folds in enumerate(scores):
        params = {"optimizer": "adam", "batch_size": 16 * 2**index, "lr": 10.0 ** -(index + 1)}
        attrs = {
            "fold_scores": folds,
            "fold_curves": [folds],
            "train_seconds": 1.0 + index,
            "images_per_second": 100.0,
        }
        study.add_trial(
            optuna.trial.create_trial(
                value=0.9 - index / 10,
                params=params,
                distributions=distributions,
                user_attrs=attrs,
                intermediate_values={0: 0.9 - index / 10},
            )
        )
    return study


def test_a_report_of_fold_scores_that_are_not_finite_is_whole(sqlite_url, tmp_path):
    nan, inf = float("nan"), float("inf")
    _study_of_fold_scores(sqlite_url, [[0.9, nan, 0.95], [inf, 0.8, 0.8], [0.7, 0.7, 0.7]])
    result = CliRunner().invoke(
        main, ["report", "folds", "--storage", sqlite_url, "--output", str(tmp_path / "report")]
    )
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert len(list((tmp_path / "report").iterdir())) == 7
    page = (tmp_path / "report" / "index.html").read_text()
    assert (
        "0.9000 ± nan (standard error over 3 folds; trial 0)" in page
        and "0.9000 nan 0.9500" in page
    )


def test_a_report_that_fails_while_drawing_writes_no_file(sqlite_url, tmp_path, monkeypatch):
    from batchlr.studies.results import report

    study = _study_of_fold_scores(sqlite_url, [[0.9, 0.9], [0.8, 0.8]])
    drawn = []

    def fails_on_the_fifth(figure):
        drawn.append(figure)
        if len(drawn) == 5:
            raise RuntimeError("out of memory")
        return b"\x89PNG"

    monkeypatch.setattr(report, "png", fails_on_the_fifth)
    with pytest.raises(RuntimeError):
        report.write_report(study, tmp_path / "report")
    assert list((tmp_path / "report").iterdir()) == []


def _strict_json(text: str):
    """``text`` parsed as JSON that every reader takes: Python's own parser accepts NaN and Infinity."""

    def refuse(word: str):
        raise AssertionError(f"{word} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("recorded", "read"), [([float("nan"), 0.5], [None, 0.5]), (["a", 0.5], [])]
)
def test_show_and_export_read_fold_scores_as_the_report_does(sqlite_url, tmp_path, recorded, read):
    _study_of_fold_scores(sqlite_url, [recorded, [0.8, 0.8]])
    shown = invoke("show", "folds", "--storage", sqlite_url).output
    assert f"best trial 0: accuracy 0.9000, folds {'nan 0.5000' if read else '-'}" in shown
    report = _strict_json(invoke("show", "folds", "--storage", sqlite_url, "--json").output)
    assert (
        report["best"]["user_attrs"]["fold_scores"] == read
        and report["top"][0]["user_attrs"]["fold_scores"] == read
    )
    for name in ("best.json", "best.yaml"):
        invoke("export", "folds", "--storage", sqlite_url, "--output", str(tmp_path / name))
        scores = batchlr.load_config(tmp_path / name).fold_scores
        # a diverged fold reads back as nan
        assert [None if score != score else score for score in scores] == read
    assert _strict_json((tmp_path / "best.json").read_text())["fold_scores"] == read


def test_json_text_writes_numbers_that_are_not_finite_as_null():
    from batchlr.json_text import json_text

    nan, inf = float("nan"), float("inf")
    assert (
        json_text({"a": [nan, inf, (1.5, -inf)], "b": "NaN", "c": 2})
        == '{"a": [null, null, [1.5, null]], "b": "NaN", "c": 2}'
    )


def test_refit_writes_the_fold_scores_as_the_report_reads_them(sqlite_url, tmp_path):
    invoke(
        "run",
        "--storage",
        sqlite_url,
        "--study",
        "r",
        "--dataset",
        "digits",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--device",
        "cpu",
        "--quiet",
    )
    study = optuna.load_study(study_name="r", storage=sqlite_url)
    trained = study.trials[0]
    damaged = {**trained.user_attrs, "fold_scores": ["a", 0.5]}
    study.add_trial(
        optuna.trial.create_trial(
            value=1.0,
            params=trained.params,
            distributions=trained.distributions,
            user_attrs=damaged,
        )
    )
    invoke(
        "refit", "r", "--storage", sqlite_url, "--output", str(tmp_path / "m.pt"), "--device", "cpu"
    )
    info = torch.load(tmp_path / "m.pt", weights_only=True)["info"]
    assert info["trial"] == 1 and info["fold_scores"] == []
