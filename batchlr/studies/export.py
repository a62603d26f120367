"""The best configuration of a study as a JSON or YAML file, and reading it back in other projects."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

import batchlr
from batchlr.errors import BatchlrError
from batchlr.objectives.optimizers import make_optimizer
from batchlr.objectives.schedules import make_scheduler
from batchlr.search.space import Hyperparameters, LrScaling
from batchlr.studies.spec import METRIC, StudySpec, study_spec
from batchlr.studies.storage import open_storage
from batchlr.studies.summary import best_complete_trial, fastest_within, load_existing_study

YAML_SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class BestConfig:
    """A study's best configuration, as written by ``batchlr export``.

    ``params`` holds exactly the best trial's Optuna params; ``batch_size``, ``lr`` and
    ``optimizer`` read them, and :meth:`make_optimizer` builds the torch optimizer.
    ``settings`` is everything the study was created with (data set, model, folds, budget,
    schedule, warmup, LR scaling, ...), as ``batchlr show --json`` prints it.
    """

    study: str
    trial: int
    value: float
    metric: str
    direction: str
    params: dict[str, Any]
    fold_scores: list[float]
    train_seconds: float | None
    settings: StudySpec
    versions: dict[str, str]

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters.from_params(self.params, self.settings.space.lr_scaling)

    def lr_for(self, batch_size: int, rule: str | None = None) -> float:
        """The learning rate for ``batch_size``, rescaled from this configuration's lr.

        ``rule`` defaults to the study's ``--lr-scaling`` rule; for a study that searched lr
        directly, name one (``"linear"`` or ``"sqrt"``) to rescale with.
        """
        rule = rule or self.settings.space.lr_scaling.rule
        if rule == "none":
            raise BatchlrError("this study searched lr without a scaling rule; call lr_for(batch_size, rule='linear' or 'sqrt')")
        return LrScaling(rule, self.batch_size).lr(self.lr, batch_size)

    @property
    def batch_size(self) -> int:
        return self.hyperparameters.batch_size

    @property
    def lr(self) -> float:
        return self.hyperparameters.lr

    @property
    def optimizer(self) -> str:
        return self.hyperparameters.optimizer

    @property
    def momentum(self) -> float | None:
        return self.hyperparameters.momentum

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The configured optimizer (SGD, Adam or RMSprop with the found lr and momentum) over ``parameters``."""
        return make_optimizer(self.hyperparameters, parameters)

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The study's learning-rate schedule (and warmup) over ``steps`` optimizer steps; call
        its ``step()`` after each ``optimizer.step()``. Warmup is in epochs, so a study with
        warmup needs ``steps_per_epoch``."""
        training = self.settings.training
        if training.warmup and not steps_per_epoch:
            raise BatchlrError(f"the study warms up for {training.warmup:g} epochs: pass steps_per_epoch to make_scheduler")
        return make_scheduler(optimizer, steps, training.schedule, round(training.warmup * (steps_per_epoch or 0)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :func:`load_config` reads."""
        record = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**record, "settings": self.settings.to_attrs()}


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BestConfig:
    """A complete trial of a batchlr study as a :class:`BestConfig`."""
    return BestConfig(
        study=study.study_name,
        trial=trial.number,
        value=float(trial.values[0]),
        metric=METRIC,
        direction=study.directions[0].name.lower(),
        params=dict(trial.params),
        fold_scores=list(trial.user_attrs.get("fold_scores", [])),
        train_seconds=trial.user_attrs.get("train_seconds"),
        settings=study_spec(study),
        versions={"batchlr": batchlr.__version__, "torch": str(torch.__version__), "optuna": optuna.__version__},
    )


def export_trial(storage_url: str, study_name: str, output: Path, delta: float | None = None) -> BestConfig:
    """``batchlr export``: write the best complete trial of a study to ``output``, or with
    ``delta`` the fastest within ``delta`` accuracy of it; returns what was written."""
    study = load_existing_study(open_storage(storage_url, create=False), study_name)
    trial = fastest_within(study, delta) if delta is not None else best_complete_trial(study)
    config = trial_config(study, trial)
    write_config(config, output)
    return config


def write_config(config: BestConfig, path: Path) -> None:
    """Write ``config`` as YAML when ``path`` ends in .yaml/.yml, else as JSON."""
    record = config.to_dict()
    text = yaml.safe_dump(record, sort_keys=False) if path.suffix.lower() in YAML_SUFFIXES else json.dumps(record, indent=2) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise BatchlrError(f"cannot write {path}: {error.strerror}") from None


def load_config(path: str | Path) -> BestConfig:
    """Read a file written by ``batchlr export`` (JSON, or YAML by its suffix).

    Raises:
        BatchlrError: when the file is missing, malformed, or lacks a field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        record = yaml.safe_load(text) if path.suffix.lower() in YAML_SUFFIXES else json.loads(text)
    except OSError as error:
        raise BatchlrError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise BatchlrError(f"{path} is not valid {'YAML' if path.suffix.lower() in YAML_SUFFIXES else 'JSON'}: {error}") from None
    return _from_record(record, path)


def _from_record(record: Any, path: Path) -> BestConfig:
    if not isinstance(record, Mapping):
        raise BatchlrError(f"{path} does not hold a batchlr configuration object")
    if "settings" not in record:
        record = _from_first_format(record)
    fields = [field.name for field in dataclasses.fields(BestConfig)]
    missing = [name for name in fields if name not in record]
    if missing:
        raise BatchlrError(f"{path} lacks {', '.join(missing)}; export it again with batchlr export")
    try:
        config = BestConfig(**{**{name: record[name] for name in fields}, "settings": StudySpec.from_attrs(record["settings"])})
        config.hyperparameters  # a bad file fails here, not at first use
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise BatchlrError(f"{path}: malformed params or settings ({error}); export it again with batchlr export") from None
    return config


def _from_first_format(record: Mapping[str, Any]) -> dict[str, Any]:
    """An export of batchlr 0.1.0, which kept the settings at the top level, in today's form."""
    budget, scaling = record.get("budget") or {}, record.get("lr_scaling") or {}
    settings = {key: record[key] for key in ("dataset", "model", "folds", "schedule", "warmup") if key in record}
    settings |= {"budget": budget.get("kind"), budget.get("kind") or "epochs": budget.get("amount") or record.get("epochs")}
    settings |= {"lr_scaling": scaling.get("rule"), "reference_batch_size": scaling.get("reference_batch_size")}
    return {**record, "train_seconds": record.get("train_seconds"), "settings": settings}
