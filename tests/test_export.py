"""load_config: the API other projects use."""

import json
import re

import pytest
import torch

import batchlr
from batchlr.errors import BatchlrError

RECORD = {
    "study": "s",
    "trial": 3,
    "value": 0.9,
    "metric": "accuracy",
    "direction": "maximize",
    "params": {"batch_size": 64, "lr": 0.05, "optimizer": "sgd", "momentum": 0.8},
    "fold_scores": [0.9, 0.9, 0.9],
    "dataset": "digits",
    "model": "convnet",
    "epochs": 4,
    "folds": 3,
    "versions": {"batchlr": "0.1.0", "torch": "2", "optuna": "5"},
}


def test_an_export_of_release_0_1_0_still_loads(tmp_path):
    path = tmp_path / "old.json"
    params = {"batch_size": 128, "base_lr": 0.05, "optimizer": "adam"}
    scaling = {"rule": "sqrt", "reference_batch_size": 32}
    path.write_text(
        json.dumps(
            {
                **RECORD,
                "params": params,
                "budget": {"kind": "steps", "amount": 50},
                "lr_scaling": scaling,
            }
        )
    )
    cfg = batchlr.load_config(path)
    settings = cfg.settings
    assert cfg.lr == pytest.approx(0.1)
    assert (
        settings.dataset,
        settings.folds,
        settings.training.budget.kind,
        settings.training.budget.amount,
    ) == ("digits", 3, "steps", 50)
    assert (settings.space.lr_scaling.rule, settings.space.lr_scaling.reference_batch_size) == (
        "sqrt",
        32,
    )


def test_make_optimizer_applies_lr_and_momentum(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps(RECORD))
    cfg = batchlr.load_config(path)
    optimizer = cfg.make_optimizer(torch.nn.Linear(3, 1).parameters())
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.05 and optimizer.param_groups[0]["momentum"] == 0.8
    assert (cfg.batch_size, cfg.optimizer) == (64, "sgd")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "configuration object"),
        (json.dumps({**RECORD, "params": {"batch_size": 1}}), "lack lr, optimizer"),
        (
            json.dumps({key: value for key, value in RECORD.items() if key != "study"}),
            "lacks study",
        ),
        (
            json.dumps({**RECORD, "params": {**RECORD["params"], "optimizer": "lion"}}),
            "unknown optimizer",
        ),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BatchlrError, match=message):
        batchlr.load_config(path)


def test_missing_file_is_a_clear_error(tmp_path):
    missing = re.escape(str(tmp_path / "nope.yaml"))
    with pytest.raises(BatchlrError, match=f"^export file {missing} does not exist$"):
        batchlr.load_config(tmp_path / "nope.yaml")
