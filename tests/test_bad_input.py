"""Whatever a user types: one line naming the problem, a non-zero exit, no traceback, storage untouched."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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
    result = CliRunner().invoke(
        main, ["run", "--storage", f"sqlite:///{path}", "--study", "done", *TINY, "--n-trials", "1"]
    )
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


# Inputs batchlr did not make: users' models (--model NAME:build) and study files (run --config).
USER_MODELS = {
    "model_wrong_classes": "from torch import nn\ndef build(shape, classes):\n"
    "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(classes + 1))\n",
    "model_squeezed": "from torch import nn\ndef build(shape, classes):\n"
    "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(1), nn.Flatten(0))\n",
    "model_no_parameters": "from torch import nn\ndef build(shape, classes):\n"
    "    return nn.Sequential(nn.Flatten(), nn.AdaptiveAvgPool1d(classes))\n",
    "model_frozen": "from torch import nn\ndef build(shape, classes):\n"
    "    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], classes))"
    ".requires_grad_(False)\n",
    "model_tuple": "from torch import nn\nclass Two(nn.Sequential):\n"
    "    def forward(self, x):\n        y = super().forward(x)\n        return y, y\n"
    "def build(shape, classes):\n    return Two(nn.Flatten(), nn.LazyLinear(classes))\n",
    "model_broken_forward": "from torch import nn\ndef build(shape, classes):\n"
    "    return nn.Sequential(nn.Flatten(), nn.Linear(5, classes))\n",
    "model_bad_signature": "def build(shape):\n    pass\n",
    "model_syntax": "def build(shape, classes)\n    pass\n",
    "model_missing_dependency": "import batchlr_no_such_dependency\n",
    "model_raises_on_import": "raise RuntimeError('needs a GPU\\nto import')\n",
    "model_exits_on_import": "raise SystemExit(3)\n",
    "model_exits_in_build": "import sys\ndef build(shape, classes):\n    sys.exit(0)\n",
    "model_exits_in_forward": "import sys\nfrom torch import nn\nclass Quits(nn.Linear):\n"
    "    def forward(self, x):\n        sys.exit(0)\n"
    "def build(shape, classes):\n    return Quits(1, classes)\n",
}
STUDY_FILES = {
    "folds_float.toml": b"folds = 2.7\n",
    "optimizers_numbers.toml": b"optimizers = [1, 2]\n",
    "lr_bool.toml": b"lr = true\n",
    "nested_table.toml": b"[folds]\na = 1\n",
    "date.toml": b"seed = 1979-05-27\n",
    "quiet_string.toml": b'quiet = "yes"\n',
    "timeout_nan.toml": b"timeout = nan\n",
    "latin1.toml": 'study = "caf\u00e9"\n'.encode("latin-1"),
    "deep.toml": b"folds = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "study_list.toml": b'study = ["a", "b"]\n',
    "folds_list.toml": b"folds = [2, 3]\n",
    "lr_nested_list.toml": b"lr = [[0.1], 1]\n",
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Iterator[Path]:
    """A folder of USER_MODELS (importable while the module's tests run) and STUDY_FILES."""
    root = tmp_path_factory.mktemp("inputs")
    for name, source in USER_MODELS.items():
        (root / f"{name}.py").write_text(source)
    for name, content in STUDY_FILES.items():
        (root / name).write_bytes(content)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield root


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
    (
        ["run", "--batch-size", "2000:4000"],
        2,
        "--batch-size 2000:4000: the smallest training fold holds only",
    ),
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
    (["run", "--storage", "sqlite:////proc/nope/x.db"], 1, "no directory /proc/nope"),
    (["run", "--storage", "sqlite:///{images}/bird/notes.png/x.db"], 1, "cannot create a file in"),
    (["run", "--storage", "postgresql://postgres@127.0.0.1:1/test"], 1, "cannot open storage"),
    (
        ["run", "--storage", "sqlite:///{db}", "--study", "done", "--lr", "1e-3:1e-2"],
        2,
        "created with --lr",
    ),
    (
        ["run", "--storage", "sqlite:///{db}", "--study", "done", "--objectives", "accuracy,time"],
        2,
        "created with --objectives",
    ),
    (["run", "--storage", "sqlite:///{db}", "--study", "empty"], 1, "not made by batchlr"),
    (["run", "--budget", "steps"], 2, "--budget steps: needs a step count (steps)"),
    (["run", "--max-micro-batch", "0"], 2, "auto"),
    # Digits str.isdigit() takes and int() refuses: one parser for every option of whole numbers.
    (["run", "--max-micro-batch", "\u00b2"], 2, "auto"),
    (["run", "--image-size", "3\u00b2"], 2, "--image-size"),
    (["run", "--sampler", "grid", "--grid-points", "lr=1\u00b2"], 2, "--grid-points"),
    (["run", "--image-size", "9" * 5000], 2, "--image-size"),
    # Values judged by the setting's own rule, named as the option spells them.
    (["run", "--image-size", "32x0"], 2, "--image-size 32x0: give HEIGHT and WIDTH"),
    (["run", "--weight-decay", "1e-2:1e-5"], 2, "--weight-decay 0.01:1e-05: give a number or"),
    # Sizes bounded before the study exists: the snapshot shows nothing stored.
    (
        [
            "run",
            "--storage",
            "sqlite:///{db}",
            "--study",
            "huge",
            "--sampler",
            "grid",
            "--grid-points",
            "lr=1000,batch_size=1000,weight_decay=1000",
            "--weight-decay",
            "1e-5:1e-2",
        ],
        2,
        "more than 100,000",
    ),
    (
        [
            "run",
            "--storage",
            "sqlite:///{tmp}/new.db",
            "--sampler",
            "grid",
            "--grid-points",
            "lr=1000,batch_size=1000",
        ],
        2,
        "more than 100,000",
    ),
    (["run", "--n-trials", "0"], 2, "--n-trials"),
    (["run", "--timeout", "-5"], 2, "--timeout"),
    (["run", "--warmup", "-1"], 2, "--warmup"),
    (["run", "--warmup", "nan"], 2, "--warmup"),
    (["run", "--warmup", "inf"], 2, "--warmup"),
    (["run", "--warmup", "10"], 2, "--warmup 10.0: is not shorter than the 10 epochs"),
    (["run", "--warmup", "0.5", "--schedule", "onecycle"], 2, "--warmup 0.5: one-cycle warms up"),
    (["run", "--epochs", "0"], 2, "--epochs 0: must be a whole number from 1 to 10000"),
    (["run", "--steps", "0"], 2, "--steps 0: must be a whole number from 1"),
    (["run", "--label-smoothing", "nan"], 2, "--label-smoothing nan: give a number from 0 up to 1"),
    (["run", "--reference-batch-size", "0"], 2, "--reference-batch-size 0: must be a whole number"),
    (["run", "--seed", "-1"], 2, "--seed"),
    (["run", "--study", ""], 2, "--study is empty"),
    (["run", "--epochs", "100000000000000000000"], 2, "--epochs"),
    (["noise-scale", "--seed", "-1"], 2, "--seed"),
    (
        ["export", "nosuchstudy", "--storage", "sqlite:///{db}", "--output", "{tmp}/x.json"],
        1,
        "no study",
    ),
    (
        ["export", "empty", "--storage", "sqlite:///{db}", "--output", "{tmp}/x.json"],
        1,
        "not made by batchlr",
    ),
    (
        ["report", "empty", "--storage", "sqlite:///{db}", "--output", "{tmp}/report"],
        1,
        "not made by batchlr",
    ),
    (["show", "empty", "--storage", "sqlite:///{db}", "--as-config"], 1, "not made by batchlr"),
    (
        ["export", "done", "--storage", "sqlite:///{db}", "--output", "/proc/nope/x.json"],
        1,
        "cannot write",
    ),
    (
        [
            "export",
            "done",
            "--storage",
            "sqlite:///{db}",
            "--pick",
            "fastest-within",
            "--output",
            "x.json",
        ],
        2,
        "DELTA",
    ),
    (
        ["refit", "done", "--storage", "sqlite:///{db}", "--output", "/no such dir/x.pt"],
        1,
        "no directory",
    ),
    (["show", "done", "--storage", "sqlite:///{tmp}/missing.db"], 1, "no such file"),
    (["studies", "--storage", "sqlite:///{notes}"], 1, "cannot open storage"),
    (["dashboard", "--storage", "sqlite:///{db}", "--port", "70000"], 2, "--port"),
    (["lr-find", "--batch-size", "100000"], 2, "--batch-size"),
    (["nosuchcommand"], 2, "nosuchcommand"),
    # Numeric extremes: refused up front, never "unexpected".
    (["run", "--lr", "1e300:1e308"], 2, "at most 1e+06"),
    (["run", "--lr", "1e-4:1e7", "--lr-scaling", "linear"], 2, "--lr"),
    (["run", "--heartbeat", "1000000000000"], 2, "--heartbeat"),
    (["run", "--timeout", "nan"], 2, "--timeout"),
    (["run", "--timeout", "inf"], 2, "--timeout"),
    (["run", "--seed", "4294967296"], 2, "--seed"),
    (["lr-find", "--momentum", "nan"], 2, "--momentum"),
    (["lr-find", "--end-lr", "1e300"], 2, "--end-lr"),
    (["noise-scale", "--lr", "inf"], 2, "--lr"),
    (
        [
            "export",
            "done",
            "nan",
            "--pick",
            "fastest-within",
            "--storage",
            "sqlite:///{db}",
            "--output",
            "{tmp}/x.json",
        ],
        2,
        "DELTA",
    ),
    # Users' models, checked before a study is created.
    (
        ["run", "--model", "model_wrong_classes:build"],
        1,
        "output of shape (2, 11) where (2, 10) is needed",
    ),
    (["run", "--model", "model_squeezed:build"], 1, "output of shape (2,)"),
    (["run", "--model", "model_no_parameters:build"], 1, "no trainable parameters"),
    (["run", "--model", "model_frozen:build"], 1, "no trainable parameters"),
    (["run", "--model", "model_tuple:build"], 1, "a tuple, not a tensor"),
    (["run", "--model", "model_broken_forward:build"], 1, "fails in its forward pass"),
    (["run", "--model", "model_bad_signature:build"], 1, "raised TypeError"),
    (
        ["run", "--model", "model_syntax:build"],
        2,
        "--model model_syntax:build: importing model_syntax raised SyntaxError",
    ),
    (["run", "--model", "model_missing_dependency:build"], 2, "batchlr_no_such_dependency"),
    (
        ["run", "--model", "model_raises_on_import:build"],
        2,
        "raised RuntimeError: needs a GPU to import",
    ),
    (["run", "--model", "model_exits_on_import:build"], 2, "raised SystemExit"),
    # An exit(0) in a user's model is an error naming it, not a silent success.
    (
        ["run", "--model", "model_exits_in_build:build"],
        1,
        "--model model_exits_in_build:build: build((1, 8, 8), 10) called exit(0)",
    ),
    (
        ["run", "--model", "model_exits_in_forward:build"],
        1,
        "fails in its forward pass: SystemExit: 0",
    ),
    # Study files of the wrong types or encoding.
    (["run", "--config", "{inputs}/folds_float.toml"], 2, "folds = 2.7 is not a whole number"),
    (["run", "--config", "{inputs}/optimizers_numbers.toml"], 2, "unknown optimizer"),
    (["run", "--config", "{inputs}/lr_bool.toml"], 2, "lr = True"),
    (["run", "--config", "{inputs}/nested_table.toml"], 2, "folds = {'a': 1}"),
    (["run", "--config", "{inputs}/date.toml"], 2, "seed = datetime.date"),
    (["run", "--config", "{inputs}/quiet_string.toml"], 2, "quiet = 'yes'"),
    (["run", "--config", "{inputs}/timeout_nan.toml"], 2, "--timeout"),
    (["run", "--config", "{inputs}/latin1.toml"], 2, "not UTF-8"),
    (["run", "--config", "{inputs}/deep.toml"], 2, "nests too deeply"),
    (
        ["run", "--config", "{inputs}/study_list.toml"],
        2,
        "study = ['a', 'b'] is a list; study takes one value",
    ),
    (["run", "--config", "{inputs}/folds_list.toml"], 2, "folds = [2, 3] is a list"),
    (["run", "--config", "{inputs}/lr_nested_list.toml"], 2, "is not a list of strings or numbers"),
    (["run", "--config", "{inputs}"], 2, "is a directory"),
]


@pytest.mark.parametrize(
    ("args", "code", "word"), CASES, ids=[" ".join(case[0])[:60] for case in CASES]
)
def test_bad_input(args, code, word, existing, broken_images, inputs, tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n" * 50)
    places = {
        "db": existing,
        "images": broken_images,
        "inputs": inputs,
        "tmp": tmp_path,
        "notes": notes,
    }
    before = snapshot(existing)
    result = CliRunner().invoke(main, [arg.format(**places) for arg in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert word in lines[0] and "Traceback" not in result.output
    assert snapshot(existing) == before
    assert notes.read_text().startswith("my notes")
    # nor a database made for it (the working directory's default one included)
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["notes.db"]


def test_a_fifo_as_an_export_is_refused_before_it_is_opened(tmp_path):
    import os
    import threading

    import batchlr

    fifo = tmp_path / "best.json"
    os.mkfifo(fifo)
    refused: list[Exception] = []

    def load() -> None:
        try:
            batchlr.load_config(fifo)
        except Exception as error:
            refused.append(error)

    # Opening a FIFO blocks until a writer comes: in a thread, so that a hang fails the test.
    loading = threading.Thread(target=load, daemon=True)
    loading.start()
    loading.join(timeout=60)
    assert [str(error) for error in refused] == [
        f"export file {fifo} is a FIFO, not a regular file; give a file"
    ]


@pytest.mark.process
def test_a_fifo_as_study_file_is_refused_before_it_is_opened(tmp_path):
    # Opening a FIFO blocks until a writer comes: in a subprocess, so that a hang fails the test.
    import os
    import subprocess
    import sys

    fifo = tmp_path / "study.toml"
    os.mkfifo(fifo)
    command = [
        sys.executable,
        "-m",
        "batchlr",
        "run",
        "--config",
        str(fifo),
        "--storage",
        f"sqlite:///{tmp_path / 'x.db'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"Error: --config {fifo} is a FIFO, not a regular file; give a file"
    ], result.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.process
def test_compile_without_a_cpp_compiler_is_one_line_before_the_study_is_created(tmp_path):
    # A fresh process, CXX a compiler that is not there, and an empty inductor cache, so nothing
    # compiled before can answer.
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-g++"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
    }
    command = [
        sys.executable,
        "-m",
        "batchlr",
        "run",
        "--storage",
        f"sqlite:///{tmp_path / 's.db'}",
        "--study",
        "c",
        *TINY,
        "--n-trials",
        "1",
        "--compile",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert (
        lines[0].startswith("Error: --compile: torch.compile does not work on cpu")
        and "leave --compile off" in lines[0]
    )
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 's.db'}") == []


def test_a_model_that_exits_while_training_fails_its_trial_with_one_line(tmp_path):
    # The model check runs the forward pass in eval mode; only training reaches this exit().
    (tmp_path / "quits_training.py").write_text(
        "import sys\nfrom torch import nn\nclass Quits(nn.Sequential):\n    def forward(self, x):\n"
        "        if self.training:\n            sys.exit(0)\n        return super().forward(x)\n"
        "def build(shape, classes):\n    return Quits(nn.Flatten(), nn.LazyLinear(classes))\n"
    )
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    args = [
        "run",
        "--storage",
        storage,
        "--study",
        "q",
        "--model",
        "quits_training:build",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--n-trials",
        "1",
        "--fuse-folds",
        "off",
        "-q",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert (
        result.output.strip().splitlines()[-1]
        == "Error: --model quits_training:build: its code called exit(0) in trial 0; a model must return or raise"
    )
    import optuna

    assert [trial.state for trial in optuna.load_study(study_name="q", storage=storage).trials] == [
        optuna.trial.TrialState.FAIL
    ]


def test_an_exit_inside_any_command_is_an_error_not_a_silent_success():
    # batchlr never exits inside a command, so an exit() there is a model's code wherever it
    # runs (refit, predict with --trust-model-code): a status 0 would report success.
    from batchlr.cli import BatchlrGroup

    group = BatchlrGroup(name="batchlr")

    @group.command()
    def quits() -> None:
        raise SystemExit(0)

    result = CliRunner().invoke(group, ["quits"])
    assert result.exit_code == 1 and result.output.startswith(
        "Error: a model's code called exit(0)"
    ), result.output


def test_ctrl_c_in_any_command_is_one_line_and_status_130():
    from batchlr.cli import BatchlrGroup

    group = BatchlrGroup(name="batchlr")

    @group.command()
    def loads() -> None:
        raise KeyboardInterrupt  # as a Ctrl-C while a run still loads its data

    result = CliRunner().invoke(group, ["loads"])
    # click starts a fresh line first, after the ^C a terminal echoes.
    assert (
        result.exit_code == 130
        and result.output.strip() == "Error: interrupted; run the same command again"
    ), result.output


def test_a_storage_it_cannot_create_is_refused_before_any_set_up(tmp_path, monkeypatch):
    # Set-up can take minutes (--lr auto's range tests): the new file's directory comes first.
    def set_up(*args, **kwargs):
        raise AssertionError("set up before the storage was checked")

    monkeypatch.setattr("batchlr.studies.run.lifecycle.prepare", set_up)
    result = CliRunner().invoke(
        main, ["run", "--storage", f"sqlite:///{tmp_path}/nodir/x.db", "--lr", "auto"]
    )
    assert result.exit_code == 1, result.output
    assert f"there is no directory {tmp_path}/nodir; create it first" in result.output
