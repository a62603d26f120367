"""Whatever a user types: one line naming the problem, a non-zero exit, no traceback, storage untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from batchlr.cli import main
from tests.conftest import CIFAR_SUBSET

TINY = ["--folds", "2", "--epochs", "1", "--device", "cpu", "--batch-size", "32:64"]


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """A storage with one batchlr study, "done", and one plain Optuna study with no trial, "empty"."""
    path = tmp_path_factory.mktemp("bad") / "studies.db"
    result = CliRunner().invoke(main, ["run", "--storage", f"sqlite:///{path}", "--study", "done", *TINY, "--n-trials", "1"])
    assert result.exit_code == 0, result.output
    optuna.create_study(study_name="empty", storage=f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module")
def broken_images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for name in ("airplane", "bird"):
        (root / name).mkdir()
        for image in sorted((CIFAR_SUBSET / name).iterdir())[:4]:
            shutil.copy(image, root / name / image.name)
    (root / "bird" / "notes.png").write_text("not an image")
    return root


def snapshot(path: Path) -> list:
    storage = f"sqlite:///{path}"
    return [
        (name, [(t.number, t.state, t.params, t.values) for t in study.trials], study.user_attrs)
        for name in optuna.get_all_study_names(storage)
        for study in [optuna.load_study(study_name=name, storage=storage)]
    ]


# (arguments, expected exit code, a word the message must contain); {db} is the existing storage.
CASES = [
    (["run", "--batch-size", "512:16"], 2, "MIN is greater than MAX"),
    (["run", "--batch-size", "0:16"], 2, "positive"),
    (["run", "--batch-size", "a:b"], 2, "MIN:MAX"),
    (["run", "--batch-size", "2000:4000"], 2, "smallest training fold"),
    (["run", "--lr", "1:0.001"], 2, "MIN is greater than MAX"),
    (["run", "--lr", "-1:1"], 2, "positive"),
    (["run", "--folds", "1"], 2, "--folds"),
    (["run", "--folds", "500"], 2, "--folds"),
    (["run", "--epochs", "0"], 2, "--epochs"),
    (["run", "--dataset", "nosuchset"], 2, "unknown data set"),
    (["run", "--model", "nosuchmodel"], 2, "unknown model"),
    (["run", "--model", "nosuch_package.module:build"], 2, "cannot import"),
    (["run", "--optimizers", "sgd,lion"], 2, "lion"),
    (["run", "--sampler", "bayes"], 2, "--sampler"),
    (["run", "--pruner", "never"], 2, "--pruner"),
    (["run", "--device", "cuda:99"], 2, "--device"),
    (["run", "--device", "tpu"], 2, "--device"),
    (["run", "--dataset", "imagefolder:/nowhere"], 1, "not a directory"),
    (["run", "--dataset", "imagefolder:{images}"], 1, "notes.png"),
    (["run", "--dataset", "mnist", "--data-dir", "{tmp}"], 1, "could not be downloaded"),
    (["run", "--storage", "notadb://x"], 2, "--storage"),
    (["run", "--storage", "sqlite:////proc/nope/x.db"], 1, "cannot create a file"),
    (["run", "--storage", "postgresql://postgres@127.0.0.1:1/test"], 1, "cannot open storage"),
    (["run", "--storage", "sqlite:///{db}", "--study", "done", "--lr", "1e-3:1e-2"], 2, "created with --lr"),
    (["run", "--storage", "sqlite:///{db}", "--study", "done", "--objectives", "accuracy,time"], 2, "created with --objectives"),
    (["run", "--storage", "sqlite:///{db}", "--study", "empty"], 1, "not made by batchlr"),
    (["run", "--budget", "steps"], 2, "--steps"),
    (["run", "--max-micro-batch", "0"], 2, "auto"),
    (["run", "--n-trials", "0"], 2, "--n-trials"),
    (["run", "--timeout", "-5"], 2, "--timeout"),
    (["run", "--warmup", "-1"], 2, "--warmup"),
    (["run", "--warmup", "nan"], 2, "--warmup"),
    (["run", "--warmup", "inf"], 2, "--warmup"),
    (["run", "--warmup", "10"], 2, "not shorter than --epochs"),
    (["run", "--warmup", "0.5", "--schedule", "onecycle"], 2, "onecycle"),
    (["run", "--seed", "-1"], 2, "--seed"),
    (["run", "--study", ""], 2, "--study is empty"),
    (["run", "--epochs", "100000000000000000000"], 2, "--epochs"),
    (["noise-scale", "--seed", "-1"], 2, "--seed"),
    (["export", "nosuchstudy", "--storage", "sqlite:///{db}", "--output", "{tmp}/x.json"], 1, "no study"),
    (["export", "empty", "--storage", "sqlite:///{db}", "--output", "{tmp}/x.json"], 1, "no complete trial"),
    (["export", "done", "--storage", "sqlite:///{db}", "--output", "/proc/nope/x.json"], 1, "cannot write"),
    (["export", "done", "--storage", "sqlite:///{db}", "--pick", "fastest-within", "--output", "x.json"], 2, "DELTA"),
    (["refit", "done", "--storage", "sqlite:///{db}", "--output", "/no such dir/x.pt"], 1, "no directory"),
    (["show", "done", "--storage", "sqlite:///{tmp}/missing.db"], 1, "no such file"),
    (["studies", "--storage", "sqlite:///{notes}"], 1, "cannot open storage"),
    (["dashboard", "--storage", "sqlite:///{db}", "--port", "70000"], 2, "--port"),
    (["lr-find", "--batch-size", "100000"], 2, "--batch-size"),
    (["nosuchcommand"], 2, "nosuchcommand"),
]


@pytest.mark.parametrize(("args", "code", "word"), CASES, ids=[" ".join(case[0])[:60] for case in CASES])
def test_bad_input(args, code, word, existing, broken_images, tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n" * 50)
    places = {"db": existing, "images": broken_images, "tmp": tmp_path, "notes": notes}
    before = snapshot(existing)
    result = CliRunner().invoke(main, [arg.format(**places) for arg in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert word in lines[0] and "Traceback" not in result.output
    assert snapshot(existing) == before
    assert notes.read_text().startswith("my notes")

