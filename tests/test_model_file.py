"""Refit writes a model file that describes itself; load_model, evaluate and predict use it
with no other input, and refuse files that are not batchlr's in one line."""

import json
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
        shutil.copytree(shared_data / "cifar10-subset" / "train" / name, train / name, dirs_exist_ok=True)
        if index < 2:  # the other folder holds two of the three classes: labels map by class name
            (other / name).mkdir(parents=True)
            for path in images[:15]:
                shutil.copy(path, other / name)
    storage = f"sqlite:///{root / 's.db'}"
    invoke("run", "--storage", storage, "--study", "m", "--dataset", f"imagefolder:{train}", "--model", "convnet-bn", "--folds", "2", "--epochs", "2",
           "--batch-size", "64:64", "--lr", "1e-3:1e-3", "--optimizers", "adam", "--n-trials", "1", "--device", "cpu", "--quiet", "--cache-dir", str(root / "cache"))  # fmt: skip
    invoke("refit", "m", "--storage", storage, "--output", str(root / "m.pt"), "--device", "cpu", "--cache-dir", str(root / "cache"))
    return root / "m.pt", other


def test_the_model_file_loads_with_weights_only_and_describes_itself(cifar_model):
    path, _ = cifar_model
    content = torch.load(path, weights_only=True)
    info = content["info"]
    assert content["batchlr_model"] == 1 and info["model"] == "convnet-bn" and info["classes"] == list(CLASSES)
    assert info["input_shape"] == [3, 32, 32] and len(info["mean"]) == len(info["std"]) == 3
    assert info["study"] == "m" and info["params"]["batch_size"] == 64 and 0 < info["cv_accuracy"] < 1 and 0 < info["test_accuracy"] < 1
    assert info["hyperparameters"]["optimizer"] == "adam" and info["settings"]["epochs"] == 2 and "data_dir" not in info["settings"]
    assert set(info["versions"]) == {"batchlr", "torch", "torchvision", "optuna"}
    model = batchlr.load_model(path)
    assert not model.training and model.classes == CLASSES and model.input_shape == (3, 32, 32)


def _by_hand(path: Path, folder: Path) -> float:
    """Accuracy of the file's weights on ``folder``, without batchlr's data or model code."""
    content = torch.load(path, weights_only=True)
    info = content["info"]
    network = torch.nn.Sequential(*[module for module in batchlr.load_model(path).network])  # the same architecture
    network.load_state_dict(content["state_dict"])
    network.eval()
    mean, std = torch.tensor(info["mean"]).view(1, 3, 1, 1), torch.tensor(info["std"]).view(1, 3, 1, 1)
    images, labels = [], []
    for label, name in enumerate(info["classes"]):
        for file in sorted((folder / name).glob("*.png")) if (folder / name).is_dir() else []:
            images.append(np.asarray(Image.open(file).convert("RGB")).transpose(2, 0, 1))
            labels.append(label)
    batch = (torch.from_numpy(np.stack(images)).float() / 255 - mean) / std
    with torch.no_grad():
        return (network(batch).argmax(1) == torch.tensor(labels)).float().mean().item()


def test_evaluate_in_a_new_process_scores_as_the_weights_do_by_hand(cifar_model):
    path, other = cifar_model
    command = [sys.executable, "-m", "batchlr", "evaluate", str(path), "--dataset", f"imagefolder:{other}", "--json", "--device", "cpu", "--cache-dir", str(path.parent / "cache")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 30 and report["split"] == "all images" and report["classes"] == list(CLASSES)
    assert report["accuracy"] == pytest.approx(_by_hand(path, other), abs=1e-6)
    assert sum(map(sum, report["confusion"])) == 30 and sum(report["confusion"][2]) == 0  # no bird in the other folder
    assert set(report["per_class"]) == {"airplane", "automobile"}
    text = invoke("evaluate", str(path), "--dataset", f"imagefolder:{other}", "--device", "cpu", "--cache-dir", str(path.parent / "cache"))
    assert f"accuracy {report['accuracy']:.4f} on 30 images" in text and "confusion matrix" in text


def test_predict_prints_a_label_per_image_of_any_size_and_mode(cifar_model, tmp_path):
    path, other = cifar_model
    first = next((other / "airplane").glob("*.png"))
    big_grey = tmp_path / "b.png"
    Image.open(first).convert("L").resize((50, 40)).save(big_grey)
    lines = invoke("predict", str(path), str(first), str(big_grey), "--top-k", "2").splitlines()
    assert [line.split(":")[0] for line in lines] == [str(first), str(big_grey)]
    assert all(len(line.split(": ")[1].split(", ")) == 2 and line.split(": ")[1].split()[0] in CLASSES for line in lines)
    records = json.loads(invoke("predict", str(path), str(other), "--json"))
    assert len(records) == 30 and all(len(record["top"]) == 3 for record in records)
    assert all(sum(item["probability"] for item in record["top"]) == pytest.approx(1, abs=1e-5) for record in records)


def test_evaluate_refuses_classes_the_model_does_not_know(cifar_model, shared_data):
    path, _ = cifar_model
    result = CliRunner().invoke(main, ["evaluate", str(path), "--dataset", f"imagefolder:{shared_data / 'cifar10-subset' / 'train'}", "--device", "cpu"])
    assert result.exit_code == 1 and "holds classes the model was not trained on: cat, deer" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"0.weight": torch.zeros(3)}, "is not a batchlr model file"),
        ({"batchlr_model": 99, "info": {}, "state_dict": {}}, "newer batchlr"),
        ({"batchlr_model": 1, "info": {"model": "convnet"}, "state_dict": {}}, "its info is damaged"),
        ({"batchlr_model": 1, "info": {"model": "convnet", "input_shape": [1, 8, 8], "classes": ["a", "b"], "mean": [0.5], "std": [0.2]}, "state_dict": {}}, "do not fit --model convnet"),
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
    assert result.exit_code == 1 and "no such model file" in result.output and "Traceback" not in result.output


def test_a_model_file_naming_python_code_is_built_only_when_trusted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("import torch\ndef net(shape, classes):\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    info = {"model": "mine:net", "input_shape": [1, 8, 8], "classes": ["a", "b", "c"], "mean": [0.5], "std": [0.2]}
    torch.save({"batchlr_model": 1, "info": info, "state_dict": network.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(BatchlrError, match="names the model mine:net, a Python function: .*trust_code=True"):
        batchlr.load_model(tmp_path / "m.pt")
    assert batchlr.load_model(tmp_path / "m.pt", trust_code=True).classes == ("a", "b", "c")
    refused = CliRunner().invoke(main, ["predict", str(tmp_path / "m.pt"), str(tmp_path)])
    assert refused.exit_code == 1 and "--trust-model-code" in refused.output
