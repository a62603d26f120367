"""Refit writes a model file that describes itself; load_model, evaluate and predict use it
with no other input, and refuse files that are not batchlr's in one line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import batchlr
from batchlr.cli import main
from batchlr.errors import BatchlrError
from batchlr.objectives.models import convnet

CLASSES = ("airplane", "automobile", "bird")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def cifar_model(shared_data, tmp_path_factory):
    """A refit model of a one-trial study on three CIFAR classes, and another folder of their images."""
    root = tmp_path_factory.mktemp("model")
    train, other = root / "train", root / "other"
    for index, name in enumerate(CLASSES):
        images = sorted((shared_data / "cifar10-subset" / "train" / name).glob("*.png"))
        (train / name).mkdir(parents=True)
        shutil.copytree(
            shared_data / "cifar10-subset" / "train" / name, train / name, dirs_exist_ok=True
        )
        if index < 2:  # the other folder holds two of the three classes: labels map by class name
            (other / name).mkdir(parents=True)
            for path in images[:15]:
                shutil.copy(path, other / name)
    storage = f"sqlite:///{root / 's.db'}"
    invoke(
        "run",
        "--storage",
        storage,
        "--study",
        "m",
        "--dataset",
        f"imagefolder:{train}",
        "--model",
        "convnet-bn",
        "--folds",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "64:64",
        "--lr",
        "1e-3:1e-3",
        "--optimizers",
        "adam",
        "--n-trials",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--cache-dir",
        str(root / "cache"),
    )
    invoke(
        "refit",
        "m",
        "--storage",
        storage,
        "--output",
        str(root / "m.pt"),
        "--device",
        "cpu",
        "--cache-dir",
        str(root / "cache"),
    )
    return root / "m.pt", other


def test_the_model_file_loads_with_weights_only_and_describes_itself(cifar_model):
    path, _ = cifar_model
    content = torch.load(path, weights_only=True)
    info = content["info"]
    assert (
        content["batchlr_model"] == 1
        and info["model"] == "convnet-bn"
        and info["classes"] == list(CLASSES)
    )
    assert info["input_shape"] == [3, 32, 32] and len(info["mean"]) == len(info["std"]) == 3
    assert (
        info["study"] == "m"
        and info["params"]["batch_size"] == 64
        and 0 < info["cv_accuracy"] < 1
        and 0 < info["test_accuracy"] < 1
    )
    assert (
        info["hyperparameters"]["optimizer"] == "adam"
        and info["settings"]["epochs"] == 2
        and "data_dir" not in info["settings"]
    )
    assert set(info["versions"]) == {"batchlr", "torch", "torchvision", "optuna"}
    model = batchlr.load_model(path)
    assert not model.training and model.classes == CLASSES and model.input_shape == (3, 32, 32)


def _by_hand(path: Path, folder: Path) -> float:
    """Accuracy of the file's weights on ``folder``, without batchlr's data or model code."""
    content = torch.load(path, weights_only=True)
    info = content["info"]
    network = torch.nn.Sequential(*batchlr.load_model(path).network)  # the same architecture
    network.load_state_dict(content["state_dict"])
    network.eval()
    mean, std = (
        torch.tensor(info["mean"]).view(1, 3, 1, 1),
        torch.tensor(info["std"]).view(1, 3, 1, 1),
    )
    images, labels = [], []
    for label, name in enumerate(info["classes"]):
        for file in sorted((folder / name).glob("*.png")) if (folder / name).is_dir() else []:
            images.append(np.asarray(Image.open(file).convert("RGB")).transpose(2, 0, 1))
            labels.append(label)
    batch = (torch.from_numpy(np.stack(images)).float() / 255 - mean) / std
    with torch.no_grad():
        return (network(batch).argmax(1) == torch.tensor(labels)).float().mean().item()


@pytest.mark.process
def test_evaluate_in_a_new_process_scores_as_the_weights_do_by_hand(cifar_model):
    path, other = cifar_model
    command = [
        sys.executable,
        "-m",
        "batchlr",
        "evaluate",
        str(path),
        "--dataset",
        f"imagefolder:{other}",
        "--json",
        "--device",
        "cpu",
        "--cache-dir",
        str(path.parent / "cache"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (
        report["images"] == 30
        and report["split"] == "all images"
        and report["classes"] == list(CLASSES)
    )
    assert report["accuracy"] == pytest.approx(_by_hand(path, other), abs=1e-6)
    # no bird in the other folder
    assert sum(map(sum, report["confusion"])) == 30 and sum(report["confusion"][2]) == 0
    assert set(report["per_class"]) == {"airplane", "automobile"}
    text = invoke(
        "evaluate",
        str(path),
        "--dataset",
        f"imagefolder:{other}",
        "--device",
        "cpu",
        "--cache-dir",
        str(path.parent / "cache"),
    )
    assert f"accuracy {report['accuracy']:.4f} on 30 images" in text and "confusion matrix" in text


def test_predict_prints_a_label_per_image_of_any_size_and_mode(cifar_model, tmp_path):
    path, other = cifar_model
    first = next((other / "airplane").glob("*.png"))
    big_grey = tmp_path / "b.png"
    Image.open(first).convert("L").resize((50, 40)).save(big_grey)
    lines = invoke("predict", str(path), str(first), str(big_grey), "--top-k", "2").splitlines()
    assert [line.split(":")[0] for line in lines] == [str(first), str(big_grey)]
    assert all(
        len(line.split(": ")[1].split(", ")) == 2 and line.split(": ")[1].split()[0] in CLASSES
        for line in lines
    )
    records = json.loads(invoke("predict", str(path), str(other), "--json"))
    assert len(records) == 30 and all(len(record["top"]) == 3 for record in records)
    assert all(
        sum(item["probability"] for item in record["top"]) == pytest.approx(1, abs=1e-5)
        for record in records
    )


def test_evaluate_refuses_classes_the_model_does_not_know(cifar_model, shared_data):
    path, _ = cifar_model
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(path),
            "--dataset",
            f"imagefolder:{shared_data / 'cifar10-subset' / 'train'}",
            "--device",
            "cpu",
        ],
    )
    assert (
        result.exit_code == 1
        and "holds classes the model was not trained on: cat, deer" in result.output
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"0.weight": torch.zeros(3)}, "is not a batchlr model file"),
        ({"batchlr_model": 99, "info": {}, "state_dict": {}}, "newer batchlr"),
        (
            {"batchlr_model": 1, "info": {"model": "convnet"}, "state_dict": {}},
            "its info is damaged",
        ),
        (
            {
                "batchlr_model": 1,
                "info": {
                    "model": "convnet",
                    "input_shape": [1, 8, 8],
                    "classes": ["a", "b"],
                    "mean": [0.5],
                    "std": [0.2],
                },
                "state_dict": {},
            },
            "do not fit --model convnet",
        ),
    ],
)
def test_load_model_refuses_foreign_files_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(BatchlrError, match=message):
        batchlr.load_model(path)


def test_load_model_refuses_text_and_missing_files(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(BatchlrError, match="not a model file batchlr can read"):
        batchlr.load_model(tmp_path / "x.pt")
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "none.pt"), str(tmp_path)])
    assert (
        result.exit_code == 1
        and "model file" in result.output
        and "does not exist" in result.output
        and "Traceback" not in result.output
    )


def test_a_model_file_naming_python_code_is_built_only_when_trusted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(
        "import torch\ndef net(shape, classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    info = {
        "model": "mine:net",
        "input_shape": [1, 8, 8],
        "classes": ["a", "b", "c"],
        "mean": [0.5],
        "std": [0.2],
    }
    torch.save(
        {"batchlr_model": 1, "info": info, "state_dict": network.state_dict()}, tmp_path / "m.pt"
    )
    with pytest.raises(
        BatchlrError, match=r"names the model mine:net, a Python function: .*trust_code=True"
    ):
        batchlr.load_model(tmp_path / "m.pt")
    assert batchlr.load_model(tmp_path / "m.pt", trust_code=True).classes == ("a", "b", "c")
    refused = CliRunner().invoke(main, ["predict", str(tmp_path / "m.pt"), str(tmp_path)])
    assert refused.exit_code == 1 and "--trust-model-code" in refused.output


def _hand_made(
    path: Path, shape: list[int], classes: list[str], *, scale: float = 1.0, **info
) -> Path:
    """A model file of a convnet with random weights (times ``scale``), ``info`` over the defaults."""
    torch.manual_seed(0)
    network = convnet(tuple(shape), len(classes))
    state = {name: tensor * scale for name, tensor in network.state_dict().items()}
    fields = {
        "model": "convnet",
        "input_shape": shape,
        "classes": classes,
        "mean": [0.5] * shape[0],
        "std": [0.25] * shape[0],
        **info,
    }
    torch.save({"batchlr_model": 1, "info": fields, "state_dict": state}, path)
    return path


def _nan_weights(path: Path) -> None:
    content = torch.load(path, weights_only=True)
    content["state_dict"]["0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(content, path)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (
            {"batchlr_model": "1"},
            r"is not a batchlr model file \(its format, batchlr_model, is '1', not a number from 1\)",
        ),
        ({"batchlr_model": True}, "is not a batchlr model file"),
        ({"classes": ["a", "b", "a"]}, "its info is damaged \\(class 'a' is named twice\\)"),
        ({"classes": ["\u00e9", "b", "e\u0301"]}, "class '\u00e9' is named twice"),  # NFC, NFD
        ({"classes": ["a", " ", "c"]}, r"class name ' ' is blank"),
        ({"classes": ["a", "b\tc", "c"]}, r"class name 'b\\tc' holds a control character"),
        (
            {"classes": [str(index) for index in range(100_001)]},
            "classes is not a list of 2 to 100,000 names",
        ),
        (
            {"input_shape": [1, 100000, 100000]},
            r"input_shape \[1, 100000, 100000\] exceeds the largest batchlr trains on: sides up to 4096",
        ),
        (
            {"input_shape": [100000, 64, 64], "mean": [0.5], "std": [0.25]},
            "exceeds the largest batchlr trains on",
        ),
        ({"mean": [float("nan")]}, r"mean \[nan\] or std \[0.25\] is out of range"),
        (
            {"std": [1e-300]},
            "is out of range: a mean of pixels scaled to 0..1 is from 0 to 1, a std from 1e-06 to 1",
        ),
        ({"mean": [1e300]}, "is out of range"),
        ({"nan_weights": True}, r"its weights hold NaN or infinite values \(0.weight\)"),
    ],
)
def test_load_model_refuses_unusable_contents_before_building(tmp_path, info, message, monkeypatch):
    path = _hand_made(tmp_path / "m.pt", [1, 8, 8], ["a", "b", "c"])
    content = torch.load(path, weights_only=True)
    for key, value in info.items():
        if key == "batchlr_model":
            content[key] = value
        elif key != "nan_weights":
            content["info"][key] = value
    torch.save(content, path)
    if "nan_weights" in info:
        _nan_weights(path)
    # Nothing is built, let alone allocated, for a file refused on its info.
    monkeypatch.setattr(
        "batchlr.objectives.models.catalog.build_model",
        lambda *args: pytest.fail("built a refused model"),
    )
    with pytest.raises(BatchlrError, match=message):
        batchlr.load_model(path)
    result = CliRunner().invoke(main, ["predict", str(path), str(path)])
    assert (
        result.exit_code == 1
        and result.output.count("\n") == 1
        and "unexpected" not in result.output
    ), result.output


@pytest.mark.process
def test_a_fifo_as_the_model_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "batchlr", "predict", str(fifo), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (
        result.returncode == 1
        and result.stderr
        == f"Error: model file {fifo} is a FIFO, not a regular file; give a file\n"
    )


def test_a_model_with_overflowing_outputs_prints_no_nan(tmp_path):
    path = _hand_made(tmp_path / "m.pt", [3, 8, 8], ["a", "b"], scale=1e30)
    Image.new("RGB", (8, 8), (200, 30, 90)).save(tmp_path / "x.png")
    result = CliRunner().invoke(main, ["predict", str(path), str(tmp_path / "x.png")])
    assert (
        result.exit_code == 1
        and "outputs overflow to NaN or infinity" in result.output
        and "nan" not in result.output
    )


@pytest.mark.parametrize("channels", [2, 4])
def test_a_model_of_other_channels_is_one_line_in_predict_and_evaluate(tmp_path, channels):
    path = _hand_made(tmp_path / "m.pt", [channels, 8, 8], [str(digit) for digit in range(10)])
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    predicted = CliRunner().invoke(main, ["predict", str(path), str(tmp_path / "x.png")])
    assert predicted.exit_code == 1, predicted.output
    assert (
        predicted.output
        == f"Error: the model takes {channels}-channel images but image files are read with 3; "
        "only grey (1 channel) and RGB (3) images convert into each other\n"
    )
    evaluated = CliRunner().invoke(main, ["evaluate", str(path), "--dataset", "digits"])
    assert evaluated.exit_code == 1 and evaluated.output.startswith(
        f"Error: the model takes {channels}-channel images but digits has 1;"
    ), evaluated.output


def test_evaluate_reads_the_test_split_alone(tmp_path, shared_data):
    # The shared MNIST folder holds only the t10k files, as a machine used only to evaluate would.
    path = _hand_made(tmp_path / "m.pt", [1, 8, 8], [str(digit) for digit in range(10)])
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(path),
            "--dataset",
            "mnist",
            "--data-dir",
            str(shared_data / "mnist"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (
        report["images"] == 10_000
        and report["split"] == "official test split"
        and report["note"] is None
    )
    missing = CliRunner().invoke(
        main, ["evaluate", str(path), "--dataset", "cifar10", "--data-dir", str(tmp_path / "none")]
    )
    assert missing.exit_code == 1 and "lacks test_batch (it needs its test files)" in missing.output


def test_evaluate_on_the_training_folder_scores_the_hold_out_alone(cifar_model):
    path, _ = cifar_model
    info = torch.load(path, weights_only=True)["info"]
    train = info["dataset"].removeprefix("imagefolder:")
    holdout, total = info["holdout"], len(list(Path(train).rglob("*.png")))
    assert abs(len(holdout) - 0.2 * total) <= 3 and all(
        (Path(train) / name).is_file() for name in holdout
    )
    command = [
        "evaluate",
        str(path),
        "--dataset",
        f"imagefolder:{train}",
        "--device",
        "cpu",
        "--cache-dir",
        str(path.parent / "cache"),
    ]
    result = CliRunner().invoke(main, [*command, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "hold-out set aside when the study was created" and report[
        "images"
    ] == len(holdout)
    # refit scored it in its own precision
    assert report["accuracy"] == pytest.approx(info["test_accuracy"], abs=0.02)
    assert (
        f"only the {len(holdout)} images of the hold-out its study set aside are scored, "
        f"not the {total - len(holdout):,} others" in result.stderr
    )


def test_evaluate_knows_the_training_folder_copied_elsewhere_by_its_content_not_its_names(
    cifar_model, tmp_path
):
    path, _ = cifar_model
    info = torch.load(path, weights_only=True)["info"]
    train = Path(info["dataset"].removeprefix("imagefolder:"))
    total = len(list(train.rglob("*.png")))
    command = [
        "evaluate",
        str(path),
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
    ]
    shutil.copytree(train, tmp_path / "copy")
    copied = CliRunner().invoke(main, [*command, "--dataset", f"imagefolder:{tmp_path / 'copy'}"])
    assert copied.exit_code == 0, copied.output
    assert json.loads(copied.stdout)["split"] == "hold-out set aside when the study was created"
    assert (
        json.loads(copied.stdout)["images"] == len(info["holdout"]) and "only the" in copied.stderr
    )
    # The same class and file names with other pixels are other images: all of them are scored.
    shutil.copytree(train, tmp_path / "alike")
    for image in (tmp_path / "alike").rglob("*.png"):
        Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    alike = CliRunner().invoke(main, [*command, "--dataset", f"imagefolder:{tmp_path / 'alike'}"])
    assert alike.exit_code == 0, alike.output
    assert (
        json.loads(alike.stdout)["split"] == "all images"
        and json.loads(alike.stdout)["images"] == total
        and alike.stderr == ""
    )


def test_evaluate_warns_when_an_older_model_file_cannot_tell_its_hold_out(cifar_model, tmp_path):
    path, _ = cifar_model
    content = torch.load(path, weights_only=True)
    del content["info"]["holdout"]
    torch.save(content, tmp_path / "old.pt")
    train = content["info"]["dataset"].removeprefix("imagefolder:")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(tmp_path / "old.pt"),
            "--dataset",
            f"imagefolder:{train}",
            "--device",
            "cpu",
            "--cache-dir",
            str(path.parent / "cache"),
        ],
    )
    total = len(list(Path(train).rglob("*.png")))
    assert (
        result.exit_code == 0
        and "(all images): accuracy" in result.stdout
        and f"on {total:,} images" in result.stdout
    )
    assert (
        "this accuracy counts images it trained on; refit to score the hold-out alone"
        in result.stderr
    )


def test_a_trusted_model_function_that_exits_is_an_error_naming_it(tmp_path):
    (tmp_path / "quitter.py").write_text("import sys\ndef net(shape, classes):\n    sys.exit(0)\n")
    path = _hand_made(tmp_path / "m.pt", [1, 8, 8], ["a", "b"], model="quitter:net")
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    result = CliRunner().invoke(
        main, ["predict", str(path), str(tmp_path / "x.png"), "--trust-model-code"]
    )
    assert (
        result.exit_code == 1
        and "--model quitter:net: net((1, 8, 8), 2) called exit(0)" in result.output
    ), result.output
