"""The study record: one round trip through the storage, options named alike, resume rules,
and studies written by batchlr 0.1.0 still open."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import json_to_distribution
from optuna.trial import TrialState, create_trial

import batchlr
from batchlr.cli import main, run
from batchlr.errors import BatchlrError, BatchlrUsageError, SettingError
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.search.lr_scaling import LrScaling
from batchlr.search.space import SearchSpace
from batchlr.studies.render import training_phrase
from batchlr.studies.render.run import search_phrase
from batchlr.studies.store import CREATION_KEYS, META_KEYS, StudySpec, reconcile, setting_keys

STUDIES_V1 = Path(__file__).parent / "fixtures" / "studies_v1.json"

UNUSUAL = StudySpec(
    dataset="cifar2",
    model="convnet-bn",
    folds=4,
    space=SearchSpace(
        batch_size=(8, 96),
        lr=(1e-3, 0.3),
        optimizers=("rmsprop", "sgd"),
        lr_scaling=LrScaling("sqrt", 32),
    ),
    training=TrainingSettings(
        budget=Budget("steps", 70),
        schedule="cosine",
        warmup=0.5,
        max_micro_batch=24,
        objectives=("accuracy", "time"),
        precision="fp16",
    ),
    seed=11,
    sampler="gp",
    pruner="wilcoxon",
    data_dir=Path("/data/sets"),
    lr_find={
        "rmsprop": {
            "suggested_lr": 0.01,
            "spread": 1.5,
            "loss_drop": 0.2,
            "batch_size": 32,
            "momentum": 0.9,
        }
    },
)


@pytest.mark.parametrize("spec", [StudySpec(), UNUSUAL], ids=["defaults", "unusual"])
def test_a_spec_round_trips_through_json_attrs(spec):
    attrs = json.loads(json.dumps(spec.to_attrs()))
    assert StudySpec.from_attrs(attrs) == spec
    assert attrs["batchlr_format"] == 6 and attrs["batch_size"] == list(spec.space.batch_size)


def test_each_optimizer_searches_its_own_lr_range_unless_lr_gives_one():
    spec = StudySpec(space=SearchSpace(optimizers=("sgd", "adam")))
    attrs = json.loads(json.dumps(spec.to_attrs()))
    # stored whole, so that a later release's defaults do not move a study's ranges
    assert attrs["lr"] is None and attrs["lr_ranges"] == {"sgd": [1e-3, 1.0], "adam": [1e-5, 0.1]}
    space = StudySpec.from_attrs(attrs).space
    assert space.lr_range("sgd") == (1e-3, 1.0) and space.lr_range("adam") == (1e-5, 0.1)
    shared = StudySpec.from_attrs({**attrs, "lr": [1e-4, 0.5]}).space
    assert shared.lr_ranges is None and shared.lr_range("adam") == (1e-4, 0.5)
    with pytest.raises(SettingError, match="lr_ranges"):
        StudySpec.from_attrs({**attrs, "lr_ranges": {"sgd": [1.0, 0.1]}})


def test_a_format_5_study_keeps_its_one_lr_range_and_its_range_test_reads_per_optimizer():
    attrs = {
        **StudySpec().to_attrs(),
        "batchlr_format": 5,
        "lr": [1e-4, 1.0],
        "lr_find": {"suggested_lr": 0.01, "loss_drop": 0.2, "batch_size": 32, "optimizer": "sgd"},
    }
    del attrs["lr_ranges"]
    spec = StudySpec.from_attrs(attrs)
    assert all(spec.space.lr_range(name) == (1e-4, 1.0) for name in spec.space.optimizers)
    assert spec.lr_find == {"sgd": {"suggested_lr": 0.01, "loss_drop": 0.2, "batch_size": 32}}


def test_every_setting_is_a_run_option_of_the_same_name():
    options = {param.name for param in run.params}
    assert set(setting_keys()) - CREATION_KEYS <= options
    assert not set(META_KEYS) & options


def test_option_values_read_as_a_spec():
    values = {
        "steps": 30,
        "epochs": 10,
        "budget": None,
        "batch_size": (4, 8),
        "optimizers": ("adam",),
        "n_trials": 3,
    }
    spec = StudySpec.from_attrs(values)
    assert (
        spec.training.budget == Budget("steps", 30)
        and spec.space.batch_size == (4, 8)
        and spec.space.optimizers == ("adam",)
    )
    with pytest.raises(BatchlrUsageError, match="steps 30: go with budget steps"):
        StudySpec.from_attrs({"budget": "epochs", "steps": 30})
    # A command without --precision (lr-find, noise-scale) gets a new study's default; only
    # settings written before the option existed trained in float32.
    assert StudySpec.from_attrs({"dataset": "digits"}).training.precision == "auto"
    assert StudySpec.read({"dataset": "digits"}, "a study").training.precision == "fp32"


def test_resuming_compares_fixed_settings_and_lets_per_run_ones_through():
    stored = UNUSUAL
    requested = StudySpec(folds=4, sampler="random", data_dir=Path("/elsewhere"), seed=99)
    resumed = reconcile(stored, requested, {"folds", "sampler", "data_dir", "seed"}, "s")
    assert resumed.sampler == "random" and resumed.data_dir == Path("/elsewhere")
    assert (
        resumed.seed == 11 and resumed.space == stored.space and resumed.training == stored.training
    )
    with pytest.raises(BatchlrUsageError, match="created with --schedule cosine, not constant"):
        reconcile(stored, requested, {"schedule"}, "s")


def test_a_newer_format_is_refused():
    with pytest.raises(BatchlrError, match="newer batchlr"):
        StudySpec.from_attrs({**StudySpec().to_attrs(), "batchlr_format": 99})


def _storage_of_release_0_1_0(path: Path) -> str:
    """A SQLite storage holding the two studies batchlr 0.1.0 wrote, attr for attr."""
    storage_url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(storage_url)
    for stored in json.loads(STUDIES_V1.read_text())["studies"]:
        study = optuna.create_study(
            study_name=stored["name"],
            storage=storage,
            directions=[d.lower() for d in stored["directions"]],
        )
        for trial in stored["trials"]:
            distributions = {
                name: json_to_distribution(json.dumps(value))
                for name, value in trial["distributions"].items()
            }
            intermediate = {
                int(step): value for step, value in trial["intermediate_values"].items()
            }
            study.add_trial(
                create_trial(
                    state=TrialState[trial["state"]],
                    values=trial["values"],
                    params=trial["params"],
                    distributions=distributions,
                    user_attrs=trial["user_attrs"],
                    intermediate_values=intermediate,
                )
            )
        for key, value in stored["user_attrs"].items():
            study.set_user_attr(key, value)
        for key, value in stored["system_attrs"].items():
            storage.set_study_system_attr(study._study_id, key, value)
    return storage_url


def test_studies_of_release_0_1_0_show_export_refit_and_resume(tmp_path):
    storage = _storage_of_release_0_1_0(tmp_path / "old.db")

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(main, [*args, "--storage", storage])
        assert result.exit_code == 0, result.output
        return result.output

    assert (
        "2 folds x 2 epochs, lr linear-scaled from batch 64, cosine schedule, 0.5 warmup epochs"
        in invoke("show", "old-epochs")
    )
    invoke("export", "old-epochs", "--output", str(tmp_path / "best.json"))
    config = batchlr.load_config(tmp_path / "best.json")
    assert (
        config.settings.space.lr_scaling == LrScaling("linear", 64)
        and config.settings.training.max_micro_batch == 48
    )
    # what 0.1.0 trained in, whatever today's default
    assert config.settings.training.precision == "fp32"
    assert "steps = 20" in invoke("show", "old-steps", "--as-config")
    assert "test accuracy" in invoke(
        "refit", "old-steps", "--output", str(tmp_path / "model.pt"), "--device", "cpu"
    )
    opened = invoke(
        "run", "--study", "old-epochs", "--n-trials", "1", "--device", "cpu", "--epochs", "2"
    )
    # it searches as it was created, not with today's default sampler and pruner
    assert "  sampler tpe, pruner median" in opened.splitlines()
    resumed = optuna.load_study(study_name="old-epochs", storage=storage)
    assert len(resumed.trials) == 5 and resumed.trials[-1].user_attrs["accumulation_steps"] >= 1
    assert resumed.trials[-1].user_attrs["precision"] == "fp32"
    assert resumed.trials[-1].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # created with one base_lr range for every optimizer, and resumed with it
    distribution = resumed.trials[-1].distributions["base_lr"]
    assert (distribution.low, distribution.high) == (1e-4, 1.0)


NEVER_PRUNES = "which prunes nothing: a trial's one report is its last"


@pytest.mark.parametrize(
    ("budget", "pruner", "training", "search"),
    [
        (Budget("epochs", 1), "asha", "1 epoch", f"pruner asha, {NEVER_PRUNES}"),
        (Budget("steps", 1), "median", "1 step", f"pruner median, {NEVER_PRUNES}"),
        (Budget("epochs", 2), "asha", "2 epochs", "pruner asha"),
        (Budget("epochs", 1), "none", "1 epoch", "pruner none"),
    ],
)
def test_the_opening_says_when_the_pruner_can_never_decide(budget, pruner, training, search):
    spec = StudySpec(training=TrainingSettings(budget=budget), pruner=pruner)
    assert training_phrase(spec) == training
    assert search_phrase(spec) == f"sampler ridge, {search}"


def test_the_opening_names_the_sampler_and_pruner_a_resumed_study_was_created_with():
    created = StudySpec()
    assert search_phrase(StudySpec(), created) == "sampler ridge, pruner asha"
    assert search_phrase(StudySpec(sampler="tpe"), created) == (
        "sampler tpe, pruner asha (this run; the study was created with sampler ridge)"
    )
    assert search_phrase(StudySpec(sampler="gp", pruner="none"), created) == (
        "sampler gp, pruner none (this run; the study was created with sampler ridge and "
        "pruner asha)"
    )
