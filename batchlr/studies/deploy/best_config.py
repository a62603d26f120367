"""The best configuration of a study as a JSON or YAML file, and reading it back in other projects."""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.files import write_text_atomically
from batchlr.json_text import finite_or_null, json_text
from batchlr.objectives.schedules import make_scheduler
from batchlr.objectives.settings import BUDGET_KINDS
from batchlr.objectives.trial_record import TrialRecord
from batchlr.rules import is_finite_number, is_whole_number
from batchlr.search.space import Hyperparameters, LrScaling, LrScalingRule
from batchlr.studies.store.spec import METRIC, StudySpec, study_spec
from batchlr.studies.store.storage import open_storage
from batchlr.studies.store.summary import (
    best_complete_trial,
    fastest_within,
    load_existing_study,
)

if TYPE_CHECKING:  # torch loads when a config makes an optimizer: exporting needs none of it
    import torch

VERSIONED = ("batchlr", "torch", "torchvision", "optuna")


def versions() -> dict[str, str]:
    """The versions of batchlr and what it trains with, read without importing them ("unknown"
    for a package not installed as a distribution, e.g. batchlr run from a source tree)."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {name: version(name) for name in VERSIONED}


YAML_SUFFIXES = (".yaml", ".yml")
MAX_CONFIG_BYTES = 1 << 20
"""An export is a few kilobytes; a file above this is no export and is refused unparsed."""


@dataclasses.dataclass(frozen=True)
class BestConfig:
    """A study's best configuration, as written by ``batchlr export``.

    ``params`` holds exactly the best trial's Optuna params; ``batch_size``, ``lr``,
    ``optimizer`` and ``weight_decay`` read them, :meth:`make_optimizer` builds the torch
    optimizer and :meth:`make_loss` the loss. ``settings`` is everything the study was created
    with (data set, image size, model, folds, budget, schedule, warmup, LR scaling,
    augmentation, ...), as ``batchlr show --json`` prints it. ``fold_scores`` holds nan for a
    fold whose training diverged, written as null.
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
        return Hyperparameters.from_params(self.params, self.settings.space)

    def lr_for(self, batch_size: int, rule: LrScalingRule | None = None) -> float:
        """The learning rate for ``batch_size``, rescaled from this configuration's lr.

        ``rule`` defaults to the study's ``--lr-scaling`` rule; for a study that searched lr
        directly, name one (``"linear"`` or ``"sqrt"``) to rescale with.
        """
        rule = rule or self.settings.space.lr_scaling.rule
        if rule == "none":
            raise BatchlrError(
                "this study searched lr without a scaling rule; call lr_for(batch_size, rule='linear' or 'sqrt')"
            )
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

    @property
    def weight_decay(self) -> float:
        return self.hyperparameters.weight_decay

    def make_optimizer(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The configured optimizer (SGD, Adam, RMSprop or AdamW with the found lr, momentum and
        weight decay, and Nesterov momentum where the study used it) over ``parameters``."""
        from batchlr.objectives.training import make_optimizer

        return make_optimizer(self.hyperparameters, parameters)

    def make_loss(self) -> torch.nn.CrossEntropyLoss:
        """The study's training loss: cross-entropy with its label smoothing."""
        from batchlr.objectives.training import make_loss

        return make_loss(self.settings.training.label_smoothing)

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, steps: int, steps_per_epoch: int | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The study's learning-rate schedule (and warmup) over ``steps`` optimizer steps; call
        its ``step()`` after each ``optimizer.step()``. Warmup is in epochs, so a study with
        warmup needs ``steps_per_epoch``."""
        training = self.settings.training
        if training.warmup and not steps_per_epoch:
            raise BatchlrError(
                f"the study warms up for {training.warmup:g} epochs: pass steps_per_epoch to make_scheduler"
            )
        return make_scheduler(
            optimizer, steps, training.schedule, round(training.warmup * (steps_per_epoch or 0))
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :func:`load_config` reads."""
        record = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**record, "settings": self.settings.to_attrs()}


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BestConfig:
    """A complete trial of a batchlr study as a :class:`BestConfig`."""
    record = TrialRecord.from_trial(trial)
    return BestConfig(
        study=study.study_name,
        trial=trial.number,
        value=float(trial.values[0]),
        metric=METRIC,
        direction=study.directions[0].name.lower(),
        params=dict(trial.params),
        fold_scores=record.fold_scores or [],
        train_seconds=record.train_seconds,
        settings=study_spec(study),
        versions=versions(),
    )


def export_trial(
    storage_url: str,
    study_name: str,
    output: Path,
    delta: float | None = None,
    language: str | None = None,
) -> BestConfig:
    """``batchlr export``: write the best complete trial of a study to ``output``, or with
    ``delta`` the fastest within ``delta`` accuracy of it; returns what was written.

    ``language`` (json or yaml) defaults to ``output``'s suffix, checked before the storage is read.
    """
    language = config_language(output, language)
    study = load_existing_study(open_storage(storage_url, access="read"), study_name)
    # a study batchlr did not make is refused before its trials are read as batchlr's
    study_spec(study)
    trial = fastest_within(study, delta) if delta is not None else best_complete_trial(study)
    config = trial_config(study, trial)
    write_config(config, output, language)
    return config


def config_language(path: Path, language: str | None = None) -> str:
    """``language`` when given, else ``json`` or ``yaml`` by ``path``'s suffix.

    Raises:
        BatchlrUsageError: for another suffix without ``language``: best.txt would hide what it holds.
    """
    if language:
        return language
    suffix = path.suffix.lower()
    if suffix in (".json", *YAML_SUFFIXES):
        return "yaml" if suffix in YAML_SUFFIXES else "json"
    raise BatchlrUsageError(
        f"--output {path}: name a .json, .yaml or .yml file, or give --format json or yaml"
    )


def write_config(config: BestConfig, path: Path, language: str | None = None) -> None:
    """Write ``config`` to ``path`` in ``language`` (json or yaml; default: by the suffix), a
    number that is not finite as null in either (see :mod:`batchlr.json_text`)."""
    record = config.to_dict()
    text = (
        yaml.safe_dump(finite_or_null(record), sort_keys=False)
        if config_language(path, language) == "yaml"
        else json_text(record, indent=2) + "\n"
    )
    write_text_atomically(path, text)


def load_config(path: str | Path) -> BestConfig:
    """Read a file written by ``batchlr export``: JSON for .json, YAML (which reads JSON too) otherwise.

    Raises:
        BatchlrError: in one line, for a file that cannot be read, and for any file that is not
            an export: not UTF-8, over :data:`MAX_CONFIG_BYTES`, not JSON or YAML, nested too
            deeply, or whose record lacks a field or holds a value of the wrong type or range
            (see :data:`FIELD_RULES`, :meth:`StudySpec.from_attrs`, :meth:`Hyperparameters.from_params`).
    """
    path = Path(path)
    language = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise BatchlrError(f"cannot read {path}: {error.strerror or error}") from error
    if len(data) > MAX_CONFIG_BYTES:
        raise BatchlrError(
            f"{path} is larger than {MAX_CONFIG_BYTES >> 10} KiB: no batchlr export is"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BatchlrError(f"{path} is not UTF-8 text, so no batchlr export") from error
    try:
        record = yaml.safe_load(text) if language == "YAML" else json.loads(text)
    except RecursionError as error:
        raise BatchlrError(f"{path} nests too deeply for a batchlr export") from error
    # ValueError: JSON's, and either's numbers of too many digits
    except (ValueError, yaml.YAMLError) as error:
        raise BatchlrError(
            f"{path} is not valid {language}: {' '.join(str(error).split())}"
        ) from error
    try:
        return _from_record(record)
    except BatchlrError as error:
        raise BatchlrError(f"{path}: {error}") from error


def _scalar(value: Any) -> bool:
    # Any number: Hyperparameters.from_params then says which param is out of its range.
    return value is None or isinstance(value, (str, bool, int, float))


FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "study": (lambda value: isinstance(value, str), "a study name"),
    "trial": (lambda value: is_whole_number(value) and value >= 0, "a trial number"),
    "value": (is_finite_number, "a finite number"),
    "metric": (lambda value: isinstance(value, str), "a metric name"),
    "direction": (lambda value: value in ("maximize", "minimize"), "maximize or minimize"),
    "params": (
        lambda value: (
            isinstance(value, Mapping)
            and all(isinstance(key, str) and _scalar(item) for key, item in value.items())
        ),
        "a table of param names and values",
    ),
    "fold_scores": (
        lambda value: (
            isinstance(value, list)
            and all(score is None or is_finite_number(score) for score in value)
        ),
        "a list of finite numbers, null for a fold that diverged",
    ),
    "train_seconds": (
        lambda value: value is None or (is_finite_number(value) and value >= 0),
        "a number of seconds, or null",
    ),
    "settings": (lambda value: isinstance(value, Mapping), "a table of settings"),
    "versions": (
        lambda value: (
            isinstance(value, Mapping)
            and all(isinstance(key, str) and isinstance(item, str) for key, item in value.items())
        ),
        "a table of version strings",
    ),
}
"""What each field of an export may hold; the params and settings are then read as a study's."""


def _from_record(record: Any) -> BestConfig:
    """The :class:`BestConfig` of a parsed export, every field checked.

    Raises:
        BatchlrError: naming the first field that is missing or malformed.
    """
    if not isinstance(record, Mapping):
        raise BatchlrError("it does not hold a batchlr configuration object")
    if "settings" not in record:
        record = _from_first_format(record)
    missing = [name for name in FIELD_RULES if name not in record]
    if missing:
        raise BatchlrError(f"lacks {', '.join(missing)}; export it again with batchlr export")
    for name, (fits, phrase) in FIELD_RULES.items():
        if not fits(record[name]):
            raise BatchlrError(f"{name} = {reprlib.repr(record[name])} is not {phrase}")
    seconds = record["train_seconds"]
    config = BestConfig(
        study=record["study"],
        trial=record["trial"],
        value=float(record["value"]),
        metric=record["metric"],
        direction=record["direction"],
        params=dict(record["params"]),
        fold_scores=[
            math.nan if score is None else float(score) for score in record["fold_scores"]
        ],
        train_seconds=None if seconds is None else float(seconds),
        settings=StudySpec.read(record["settings"], "its settings"),
        versions=dict(record["versions"]),
    )
    # checks the params: a bad file fails here, not at first use
    Hyperparameters.from_params(config.params, config.settings.space)
    return config


def _from_first_format(record: Mapping[str, Any]) -> dict[str, Any]:
    """An export of batchlr 0.1.0, which kept the settings at the top level, in today's form."""
    budget, scaling = record.get("budget") or {}, record.get("lr_scaling") or {}
    if not (
        isinstance(budget, Mapping)
        and isinstance(scaling, Mapping)
        and budget.get("kind") in (None, *BUDGET_KINDS)
    ):
        raise BatchlrError(
            f"budget = {reprlib.repr(budget)} and lr_scaling = {reprlib.repr(scaling)} are not "
            "those of a batchlr 0.1.0 export"
        )
    settings = {
        key: record[key]
        for key in ("dataset", "model", "folds", "schedule", "warmup")
        if key in record
    }
    settings |= {
        "budget": budget.get("kind"),
        budget.get("kind") or "epochs": budget.get("amount") or record.get("epochs"),
    }
    settings |= {
        "lr_scaling": scaling.get("rule"),
        "reference_batch_size": scaling.get("reference_batch_size"),
    }
    return {**record, "train_seconds": record.get("train_seconds"), "settings": settings}
