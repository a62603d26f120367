"""The best configuration of a study as a JSON or YAML file, and reading it back in other projects."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.files import write_text_atomically
from batchlr.json_text import finite_or_null, json_text
from batchlr.objectives.schedules import make_scheduler
from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.ridge import RidgeFit
from batchlr.search.space import Hyperparameters
from batchlr.studies.results.answer import study_answer
from batchlr.studies.results.band import Band
from batchlr.studies.results.transfer import ForcedRule, LrRule, transfer_lr
from batchlr.studies.store.data_facts import (
    DataFacts,
    data_facts,
    measured_noise_scale,
    measured_throughput,
)
from batchlr.studies.store.spec import METRIC, StudySpec
from batchlr.studies.store.storage import open_storage
from batchlr.studies.store.stored_spec import study_spec
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


@dataclasses.dataclass(frozen=True)
class BestConfig:
    """A study's best configuration, as written by ``batchlr export``.

    ``params`` holds exactly the best trial's Optuna params; ``batch_size``, ``lr``,
    ``optimizer`` and ``weight_decay`` read them, :meth:`make_optimizer` builds the torch
    optimizer and :meth:`make_loss` the loss. ``settings`` is everything the study was created
    with (data set, image size, model, folds, budget, schedule, warmup, LR scaling,
    augmentation, ...), as ``batchlr show --json`` prints it. ``fold_scores`` holds nan for a
    fold whose training diverged, written as null.

    ``ridge`` holds the study's lr ridge fit per optimizer and ``band`` its near-optimal band
    (see :mod:`batchlr.studies.results.answer`), ``data`` the input shape, classes and
    normalisation its trials trained with, ``noise_scale`` the critical batch size
    ``batchlr noise-scale --study`` measured, and ``throughput`` the band's speeds on the device
    ``batchlr throughput`` ran on, with its recommendation; exports of earlier releases lack them.
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
    ridge: dict[str, RidgeFit] = dataclasses.field(default_factory=dict)
    band: Band | None = None
    data: DataFacts | None = None
    noise_scale: float | None = None
    throughput: dict[str, Any] | None = None

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters.from_params(self.params, self.settings.space)

    def lr_for(self, batch_size: int, rule: ForcedRule | None = None) -> float:
        """The learning rate for ``batch_size``, by :meth:`lr_rule`."""
        return self.lr_rule(batch_size, rule).lr

    def lr_rule(self, batch_size: int, rule: ForcedRule | None = None) -> LrRule:
        """The learning rate for ``batch_size`` and the rule that gave it: within the study's
        fitted ridge, its exponent from the best trial's lr; below it, the ridge extrapolated,
        with a warning; above it, the ridge up to the measured critical batch size (or a surge's
        peak) and held past it, with a warning; with no ridge, the study's ``--lr-scaling``
        rule, or without one the best trial's own lr at its own batch size. ``rule``
        (``linear``, ``sqrt`` or ``noise``) forces one (see
        :func:`batchlr.studies.results.transfer.transfer_lr`).

        Raises:
            BatchlrError: where no rule applies.
        """
        fit = self.ridge.get(self.optimizer)
        return transfer_lr(
            self.lr,
            self.batch_size,
            self.optimizer,
            batch_size,
            None if fit is None else fit.ridge,
            self.noise_scale or self.settings.space.lr_scaling.noise_scale,
            self.settings.space.lr_scaling,
            self.study,
            rule,
        )

    @property
    def crop_padding(self) -> int | None:
        """The crop padding the trials used (the study's, or its default for the images), None
        without crops or for an export without the data's shape."""
        if self.data is None or "crop" not in self.settings.training.augment:
            return None
        return self.settings.training.crop_padding_for(self.data.input_shape)

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
        """The JSON form :func:`load_config` reads, with ``crop_padding`` and ``lr_by_batch``
        (the lr and its rule at a quarter to four times the batch size) for readers that do
        not load it."""
        record = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {
            **record,
            "settings": self.settings.to_attrs(),
            "ridge": {
                optimizer: fit.ridge.to_record() if fit.ridge else {"reason": fit.reason}
                for optimizer, fit in self.ridge.items()
            },
            "band": None if self.band is None else self.band.to_record(),
            "data": None if self.data is None else self.data.to_record(),
            "crop_padding": self.crop_padding,
            "lr_by_batch": self._lr_by_batch(),
        }

    def _lr_by_batch(self) -> list[dict[str, Any]]:
        rules = []
        for factor in (0.25, 0.5, 1, 2, 4):
            batch_size = max(1, round(self.batch_size * factor))
            try:
                rules.append(dataclasses.asdict(self.lr_rule(batch_size)))
            except BatchlrError:
                continue  # no rule applies: the study fitted nothing and scaled nothing
        return rules


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BestConfig:
    """A complete trial of a batchlr study as a :class:`BestConfig`."""
    record = TrialRecord.from_trial(trial)
    answer = study_answer(study)
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
        ridge=answer.ridges,
        band=answer.band,
        data=data_facts(study),
        noise_scale=measured_noise_scale(study),
        throughput=measured_throughput(study),
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
