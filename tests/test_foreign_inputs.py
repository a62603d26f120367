"""Inputs batchlr did not make: plain Optuna studies, users' models, malformed exports and study
files, and numbers and seeds at the ends of their ranges.

One-line command-line cases of each class are rows of the bad-input matrix
(tests/test_bad_input.py); here is what a row cannot show: what show prints for a study of
any direction, that nothing is written or created on a refusal, that a failed write leaves
the previous file, and that whole classes (every key, every field) are covered.
"""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner, Result
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

import batchlr
from batchlr.cli import main, run
from batchlr.errors import BatchlrError
from batchlr.objectives.models import build_model, convnet
from batchlr.search.space import SEED_LIMIT, SearchSpace, offset_seed
from batchlr.studies.deploy import MAX_CONFIG_BYTES, BestConfig, write_config
from batchlr.studies.results import write_report
from batchlr.studies.store import StudySpec

TINY = [
    "--folds",
    "2",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--batch-size",
    "32:64",
    "--n-trials",
    "1",
    "--quiet",
]
X_VALUES = (0.7, 0.2, 0.9)  # trial 1 is the lowest, trial 2 the highest


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def error_line(result: Result, code: int) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("Error: "), (
        result.output
    )
    return lines[0]


def _plain(
    storage: str, name: str, objective, directions: list[str], enqueued: list[dict]
) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, directions=directions)
    for params in enqueued:
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=len(enqueued))
    return study


def _batchlr_like(storage: str, name: str, direction: str, **attrs) -> optuna.Study:
    """A study with batchlr's settings, made without training: its trials are added as batchlr records them."""
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    for key, value in {**StudySpec().to_attrs(), **attrs}.items():
        study.set_user_attr(key, value)
    distributions = {
        "optimizer": CategoricalDistribution(["adam"]),
        "batch_size": IntDistribution(16, 512, log=True),
        "lr": FloatDistribution(1e-4, 1.0, log=True),
    }
    for index, accuracy in enumerate((0.6, 0.8, 0.7, 0.75)):
        params = {"optimizer": "adam", "batch_size": 16 * 2**index, "lr": 10.0 ** -(index + 1)}
        attrs = {
            "fold_scores": [accuracy] * 3,
            "train_seconds": 1.0 + index,
            "images_per_second": 100.0,
        }
        study.add_trial(
            create_trial(
                value=accuracy, params=params, distributions=distributions, user_attrs=attrs
            )
        )
    return study


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> str:
    """A storage of studies batchlr did not make, and of ones that only look like it."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('plain') / 'plain.db'}"
    x_only = [{"x": x} for x in X_VALUES]
    _plain(storage, "lowest", lambda trial: trial.suggest_float("x", 0, 1), ["minimize"], x_only)
    _plain(storage, "highest", lambda trial: trial.suggest_float("x", 0, 1), ["maximize"], x_only)
    # Front: (0.1, 1) and (0.5, 5); (0.6, 2) is dominated by (0.5, 5).
    pairs = [{"x": 0.5, "n": 5}, {"x": 0.1, "n": 1}, {"x": 0.6, "n": 2}]
    pareto = _plain(
        storage,
        "pareto",
        lambda trial: (trial.suggest_float("x", 0, 1), trial.suggest_int("n", 1, 5)),
        ["minimize", "maximize"],
        pairs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pareto.set_metric_names(["loss", "size"])
    optuna.create_study(study_name="bare", storage=storage)
    _batchlr_like(storage, "impostor", "minimize")
    _batchlr_like(storage, "damaged", "maximize", folds="three")
    optuna.create_study(
        study_name="unfinished", storage=storage, direction="maximize"
    ).set_user_attr("dataset", "digits")
    return storage


@pytest.mark.parametrize(
    ("name", "direction", "order"),
    [("lowest", "minimize", [1, 0, 2]), ("highest", "maximize", [2, 0, 1])],
)
def test_show_orders_a_plain_study_by_its_direction(studies, name, direction, order):
    report = json.loads(invoke("show", name, "--storage", studies, "--json").output)
    assert (
        report["settings"] is None
        and report["directions"] == [direction]
        and report["metrics"] == ["value"]
    )
    assert (
        report["best"]["number"] == order[0] and [row["number"] for row in report["top"]] == order
    )
    text = invoke("show", name, "--storage", studies).output
    word = "lowest" if direction == "minimize" else "highest"
    assert (
        f"not made by batchlr; {direction} value" in text
        and f"best trial {order[0]} ({word} value): value {X_VALUES[order[0]]}" in text
    )
    assert "accuracy" not in text


def test_show_names_a_plain_studys_objectives_and_its_pareto_front(studies):
    report = json.loads(invoke("show", "pareto", "--storage", studies, "--json").output)
    assert report["metrics"] == ["loss", "size"] and report["directions"] == [
        "minimize",
        "maximize",
    ]
    assert [row["number"] for row in report["pareto"]] == [1, 0] and [
        row["number"] for row in report["top"]
    ] == [1, 0, 2]
    text = invoke("show", "pareto", "--storage", studies).output
    assert (
        "minimize loss, maximize size" in text
        and "Pareto front (2 trials)" in text
        and "accuracy" not in text
    )


def test_studies_shows_each_studys_best_value_by_its_direction(studies):
    rows = {
        line.split()[0]: line.split()[-1]
        for line in invoke("studies", "--storage", studies).output.splitlines()[1:]
    }
    assert rows["lowest"] == "0.2000" and rows["highest"] == "0.9000"


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("lowest", "was not made by batchlr run"),
        ("pareto", "was not made by batchlr run"),
        ("impostor", "but it has directions minimize"),
        ("damaged", "study 'damaged' holds a damaged setting: folds three: must be a whole number"),
    ],
)
def test_export_and_report_refuse_a_study_batchlr_did_not_make_and_write_nothing(
    studies, tmp_path, name, word
):
    assert word in error_line(
        invoke("export", name, "--storage", studies, "--output", str(tmp_path / "best.json")), 1
    )
    assert word in error_line(
        invoke("report", name, "--storage", studies, "--output", str(tmp_path / "report")), 1
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["impostor", "damaged"])
def test_show_refuses_a_study_whose_batchlr_settings_it_cannot_trust(studies, name):
    assert f"study {name!r}" in error_line(invoke("show", name, "--storage", studies), 1)


def test_a_batchlr_study_without_a_complete_trial_exports_nothing(studies, tmp_path):
    assert "no complete trial" in error_line(
        invoke("export", "unfinished", "--storage", studies, "--output", str(tmp_path / "x.json")),
        1,
    )


# --- load_config ---------------------------------------------------------------------------

RECORD = {
    "study": "s",
    "trial": 3,
    "value": 0.9,
    "metric": "accuracy",
    "direction": "maximize",
    "params": {"batch_size": 64, "lr": 0.05, "optimizer": "sgd", "momentum": 0.8},
    "fold_scores": [0.9, 0.9],
    "train_seconds": 1.5,
    "settings": StudySpec().to_attrs(),
    "versions": {"batchlr": "0.2.0"},
}
ALIASES = (
    b"a: &a [1, 1, 1, 1, 1, 1, 1, 1]\n"
    b"b: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
    b"params: [*c, *c, *c, *c]\n"
)


def _with(path: tuple[str, ...], value) -> bytes:
    record = json.loads(json.dumps(RECORD))
    *parents, key = path
    inner = record
    for parent in parents:
        inner = inner[parent]
    if value is KeyError:
        del inner[key]
    else:
        inner[key] = value
    return json.dumps(record).encode()


MALFORMED = [
    (".json", b"\xff\xfe{}", "not UTF-8"),
    (".json", b" " * (MAX_CONFIG_BYTES + 1), "larger than"),
    (".json", b"[" * 100_000, "nests too deeply"),
    (".yaml", b"a: " + b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (".json", b'{"trial": ' + b"1" * 5000 + b"}", "not valid JSON"),
    (".yaml", b"trial: " + b"1" * 5000, "not valid YAML"),
    (".yaml", b"!!python/object/apply:os.system ['true']", "not valid YAML"),
    (
        ".yaml",
        ALIASES + yaml.safe_dump({k: v for k, v in RECORD.items() if k != "params"}).encode(),
        "params = ",
    ),
    (".json", b"[1, 2]", "configuration object"),
    (".json", _with(("params", "batch_size"), 0), "batch_size 0 is not"),
    (".json", _with(("params", "batch_size"), True), "batch_size True is not"),
    (".json", _with(("params", "batch_size"), 1.5), "batch_size 1.5 is not"),
    (".json", _with(("params", "batch_size"), "64"), "batch_size '64' is not"),
    (".json", _with(("params", "lr"), 0), "lr 0 is not a positive"),
    (".json", _with(("params", "lr"), -1), "lr -1 is not a positive"),
    (".json", _with(("params", "lr"), float("nan")), "lr nan is not a positive"),
    (".json", _with(("params", "lr"), float("inf")), "lr inf is not a positive"),
    (".json", _with(("params", "lr"), 10**400), "is not a positive learning rate"),
    (".json", _with(("params", "momentum"), 1), "momentum 1 is not"),
    (".json", _with(("params", "momentum"), -0.1), "momentum -0.1 is not"),
    (".json", _with(("params", "optimizer"), "lion"), "unknown optimizer 'lion'"),
    (".json", _with(("params", "optimizer"), KeyError), "lack optimizer"),
    (".json", _with(("settings", "schedule"), "warm"), "damaged setting: schedule warm: choose"),
    (".json", _with(("settings", "folds"), "three"), "damaged setting: folds three: must be"),
    (".json", _with(("settings", "lr"), [1, 0.1]), "damaged setting: lr 1:0.1: give MIN:MAX"),
    (".json", _with(("settings", "batchlr_format"), "2"), "no format version"),
    (".json", _with(("params",), KeyError), "lacks params"),
    (".json", _with(("params",), [64, 0.05]), "params = [64, 0.05]"),
    (".json", _with(("fold_scores",), ["a"]), "fold_scores"),
    (".json", _with(("value",), "x"), "value = 'x'"),
    (".json", _with(("direction",), "up"), "direction = 'up'"),
    (".json", _with(("settings",), "x"), "settings = 'x'"),
    (
        ".json",
        json.dumps(
            {k: v for k, v in RECORD.items() if k != "settings"} | {"budget": ["epochs"]}
        ).encode(),
        "0.1.0 export",
    ),
]


@pytest.mark.parametrize(
    ("suffix", "content", "word"),
    MALFORMED,
    ids=[f"{case[2]}-{index}" for index, case in enumerate(MALFORMED)],
)
def test_a_malformed_export_is_one_clear_error(tmp_path, suffix, content, word):
    path = tmp_path / f"best{suffix}"
    path.write_bytes(content)
    with pytest.raises(BatchlrError) as raised:
        batchlr.load_config(path)
    message = str(raised.value)
    assert word in message and str(path) in message and "\n" not in message


WEIRD = [
    None,
    True,
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    10**400,
    "",
    "x",
    [],
    [1],
    [[1]],
    {},
    {"a": [1]},
]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_load_config_lets_no_other_exception_escape_whatever_a_field_holds(tmp_path, suffix):
    """Every field, param and setting replaced by each of WEIRD: a configuration or one line."""
    path = tmp_path / f"best{suffix}"
    places = (
        [(key,) for key in RECORD]
        + [("params", key) for key in RECORD["params"]]
        + [("settings", key) for key in RECORD["settings"]]
    )
    multi_line = []
    for place in places:
        for value in WEIRD:
            record = json.loads(_with(place, value))
            path.write_text(json.dumps(record) if suffix == ".json" else yaml.safe_dump(record))
            try:
                batchlr.load_config(path)
            except BatchlrError as error:
                if "\n" in str(error):
                    multi_line.append((place, value, str(error)))
    assert multi_line == []


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_an_export_reads_back_as_written(tmp_path, suffix):
    lr_find = {
        "adam": {
            "suggested_lr": 0.01,
            "spread": 1.2,
            "loss_drop": 0.2,
            "batch_size": 32,
            "momentum": None,
        }
    }
    fields = {key: value for key, value in RECORD.items() if key != "settings"}
    config = BestConfig(**fields, settings=StudySpec(lr_find=lr_find))
    write_config(config, tmp_path / f"best{suffix}")
    assert batchlr.load_config(tmp_path / f"best{suffix}").to_dict() == config.to_dict()


def _half_then_disk_full(target) -> None:
    """A write that gets half a file into ``target`` and then finds the disk full."""
    with open(target, "wb") as half:
        half.write(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_export_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "best.json"
    fields = {key: value for key, value in RECORD.items() if key != "settings"}
    write_config(BestConfig(**fields, settings=StudySpec()), path)
    before = path.read_bytes()
    monkeypatch.setattr(
        Path, "write_text", lambda self, *args, **kwargs: _half_then_disk_full(self)
    )
    with pytest.raises(BatchlrError, match="No space left"):
        write_config(BestConfig(**{**fields, "trial": 4}, settings=StudySpec()), path)
    assert path.read_bytes() == before and [entry.name for entry in tmp_path.iterdir()] == [
        "best.json"
    ]


def test_a_failed_report_leaves_the_previous_files(tmp_path, monkeypatch):
    study = _batchlr_like(f"sqlite:///{tmp_path / 'made.db'}", "made", "maximize")
    output = tmp_path / "report"
    written = write_report(study, output)
    before = {path: path.read_bytes() for path in written}
    assert len(written) >= 3 and all(
        content[:4] == b"\x89PNG" for path, content in before.items() if path.suffix == ".png"
    )
    # each PNG, drawn before any is written
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: _half_then_disk_full(self))
    with pytest.raises(BatchlrError, match="cannot write"):
        write_report(study, output)
    assert {path: path.read_bytes() for path in written} == before and sorted(
        output.iterdir()
    ) == sorted(written)


# --- users' models ---------------------------------------------------------------------------


def test_a_models_output_is_checked_before_the_study_is_created(tmp_path):
    (tmp_path / "wide_model_for_check.py").write_text(
        "from torch import nn\ndef build(shape, classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(classes * 2))\n"
    )
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    result = invoke("run", "--storage", storage, "--model", "wide_model_for_check:build", *TINY)
    assert "where (2, 10) is needed" in error_line(result, 1)
    assert not (tmp_path / "studies.db").exists() or optuna.get_all_study_names(storage) == []


def test_the_model_check_leaves_the_model_and_the_random_state_as_built():
    def factory(shape, classes):
        model = convnet(shape, classes, batch_norm=True)
        model[0].eval()  # a user's choice of mode, kept
        return model

    torch.manual_seed(5)
    factory((3, 32, 32), 10)
    expected = torch.get_rng_state()
    torch.manual_seed(5)
    model = build_model(factory, "mine", (3, 32, 32), 10)
    assert torch.equal(torch.get_rng_state(), expected)
    norm = next(module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d))
    assert int(norm.num_batches_tracked) == 0 and torch.count_nonzero(norm.running_mean) == 0
    assert model.training and not model[0].training and model[1].training


# --- numbers and seeds at the ends of their ranges -----------------------------------------


def test_derived_seeds_stay_within_what_numpy_accepts():
    largest = SEED_LIMIT - 1
    assert (
        offset_seed(largest, 0) == largest
        and offset_seed(largest, 1) == 0
        and offset_seed(largest, 3) == 2
    )
    np.random.default_rng(offset_seed(largest, 7))


@pytest.mark.process
def test_the_largest_seed_resumes_and_runs_workers(sqlite_url):
    args = ["run", "--storage", sqlite_url, "--study", "edge", *TINY, "--seed", str(SEED_LIMIT - 1)]
    for extra in ([], [], ["--workers", "2"]):
        result = invoke(*args, *extra)
        assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="edge", storage=sqlite_url).trials
    assert len(trials) == 4 and all(
        trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials
    )


def test_a_study_searching_beyond_the_lr_limit_stops_with_one_line():
    """A study created before --lr was capped holds such a range; its next trial must not overflow deep in torch."""
    trial = optuna.create_study().ask()
    with pytest.raises(BatchlrError, match="create a new study with --lr at most"):
        SearchSpace(lr=(1e300, 1e308)).suggest(trial)


@pytest.mark.parametrize("value", ["{ a = 1 }", "1979-05-27"])
def test_every_key_of_a_study_file_refuses_a_value_of_the_wrong_type(tmp_path, value):
    path = tmp_path / "study.toml"
    keys = [
        "study",
        *(param.name for param in run.params if param.name not in ("config", "study_name")),
    ]
    for key in keys:
        path.write_text(f"{key} = {value}\n")
        assert key in error_line(invoke("run", "--config", str(path)), 2), key


@pytest.mark.process
def test_an_image_folder_named_in_bytes_that_are_not_utf_8_goes_through_run_refit_evaluate_and_predict(
    tmp_path,
):
    """Under a strict UTF-8 output (PYTHONIOENCODING=utf-8), names print as their bytes."""
    import os
    import subprocess
    import sys

    from PIL import Image

    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for name in (b"caf\xe9", b"dog"):  # Latin-1, not UTF-8
        for index in range(6):
            path = root / os.fsdecode(name) / os.fsdecode(b"\xff%d.png" % index)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def batchlr_command(*args: str) -> bytes:
        done = subprocess.run(
            [sys.executable, "-m", "batchlr", *args],
            env=environment,
            capture_output=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout

    storage = f"sqlite:///{tmp_path}/s.db"
    batchlr_command(
        "run",
        "--storage",
        storage,
        "--dataset",
        f"imagefolder:{root}",
        "--study",
        "s",
        *TINY,
        "--batch-size",
        "4:4",
    )
    batchlr_command("refit", "s", "--storage", storage, "-o", "m.pt", "--device", "cpu")
    assert b"caf\xe9 " in batchlr_command(
        "evaluate", "m.pt", "--dataset", f"imagefolder:{root}", "--device", "cpu"
    )
    assert b"/dog/\xff0.png: " in batchlr_command("predict", "m.pt", str(root), "--device", "cpu")
