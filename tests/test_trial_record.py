"""The trial record: what a trial stores round-trips through a storage, trials of batchlr 0.1.0
and of other code read with None for what they lack, and every reader copes with that."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState, create_trial

from batchlr.cli import main
from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.results import write_report
from batchlr.studies.store import fastest_within
from tests.test_spec import STUDIES_V1, _storage_of_release_0_1_0

WHOLE = TrialRecord(
    worker={"host": "node-1", "pid": 4242, "device": "cpu"},
    lr=0.05,
    param_count=1234,
    device="cpu",
    precision="bf16",
    fused_folds=True,
    steps_per_epoch=12,
    optimizer_steps=24,
    samples_seen=768,
    micro_batch=16,
    accumulation_steps=2,
    fold_scores=[0.5, math.nan],
    fold_curves=[[0.25, 0.5], [0.5, math.nan]],
    train_accuracy=0.75,
    generalization_gap=0.25,
    rounds_run=2,
    train_images=1536,
    train_seconds=1.5,
    images_per_second=512.0,
    seconds_per_epoch=0.75,
    reason="diverged",
)


def _same(one: TrialRecord, other: TrialRecord) -> bool:
    """Equal records, nan equal to nan (as JSON storages keep it)."""
    return json.dumps(one.to_attrs(), sort_keys=True) == json.dumps(
        other.to_attrs(), sort_keys=True
    )


@pytest.mark.parametrize("storage", [None, "sqlite"])
def test_a_record_written_on_a_trial_reads_back_the_same(storage, tmp_path):
    url = None if storage is None else f"sqlite:///{tmp_path / 'record.db'}"
    study = optuna.create_study(storage=url)
    trial = study.ask()
    WHOLE.write(trial)
    study.tell(trial, 0.5)
    assert _same(TrialRecord.from_trial(study.trials[0]), WHOLE)
    assert set(study.trials[0].user_attrs) == set(WHOLE.to_attrs())


def test_each_stage_writes_its_own_fields_and_keeps_the_others():
    study = optuna.create_study()
    trial = study.ask()
    TrialRecord(worker={"host": "node-1", "pid": 1}).write(trial)
    TrialRecord(lr=0.1, micro_batch=32).write(trial)
    TrialRecord(reason="oom").write(trial)
    study.tell(trial, state=TrialState.PRUNED)
    assert TrialRecord.from_trial(study.trials[0]) == TrialRecord(
        worker={"host": "node-1", "pid": 1}, lr=0.1, micro_batch=32, reason="oom"
    )


def test_a_trial_of_release_0_1_0_reads_with_none_for_what_it_lacks():
    stored = json.loads(STUDIES_V1.read_text())["studies"][0]["trials"]
    attrs = next(trial["user_attrs"] for trial in stored if trial["state"] == "COMPLETE")
    record = TrialRecord.from_attrs(attrs)
    assert record.precision is None and record.fused_folds is None
    assert record.fold_curves is None and record.reason is None
    assert record.fold_scores and all(isinstance(score, float) for score in record.fold_scores)
    assert record.train_seconds == attrs["train_seconds"] and record.worker == attrs["worker"]
    assert record.to_attrs() == {**attrs, "fold_scores": record.fold_scores}


def test_attrs_of_other_code_are_ignored_and_damaged_fold_scores_read_as_no_scores():
    record = TrialRecord.from_attrs({"mine": [1, 2], "lr": 0.1, "fold_scores": ["a", 0.5]})
    assert record == TrialRecord(lr=0.1, fold_scores=[])
    assert TrialRecord.from_attrs({"fold_scores": None}).fold_scores == []
    assert TrialRecord.from_attrs({"fold_scores": [1, 0.5]}).fold_scores == [1.0, 0.5]
    assert TrialRecord.from_attrs({}) == TrialRecord()
    assert TrialRecord().to_attrs() == {}


def test_a_trial_without_training_seconds_is_the_slowest():
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(value=0.9, user_attrs={"mine": 1}))
    study.add_trial(create_trial(value=0.8, user_attrs={"train_seconds": 100.0}))
    assert fastest_within(study, 0.2).number == 1
    assert fastest_within(study, 0.0).number == 0


def test_show_json_keeps_other_codes_attrs_and_checks_fold_scores(tmp_path):
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    study = optuna.create_study(study_name="foreign", storage=url, direction="maximize")
    attrs = {"mine": "kept", "fold_scores": "damaged", "train_seconds": 2.0}
    study.add_trial(create_trial(value=0.9, user_attrs=attrs))
    result = CliRunner().invoke(main, ["show", "foreign", "--storage", url, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["best"]["user_attrs"]
    assert shown == {"mine": "kept", "fold_scores": [], "train_seconds": 2.0}


def test_a_study_of_release_0_1_0_writes_its_report(tmp_path):
    storage = _storage_of_release_0_1_0(tmp_path / "old.db")
    study = optuna.load_study(study_name="old-epochs", storage=storage)
    files = write_report(study, tmp_path / "report")
    page = files[0].read_text()
    assert "fold scores" in page and "training seconds / images per second" in page
