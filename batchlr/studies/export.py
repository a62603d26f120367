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
from batchlr.studies.spec import METRIC

YAML_SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class BestConfig:
    """A study's best configuration, as written by ``batchlr export``.

    ``params`` holds exactly the best trial's Optuna params; ``batch_size``, ``lr`` and
    ``optimizer`` read them, and :meth:`make_optimizer` builds the torch optimizer.
    """

    study: str
    trial: int
    value: float
    metric: str
    direction: str
    params: dict[str, Any]
    fold_scores: list[float]
    dataset: str
    model: str
    epochs: int | None
    folds: int
    versions: dict[str, str]
    lr_scaling: dict[str, Any] = dataclasses.field(default_factory=lambda: LrScaling().to_dict())
    schedule: str = "constant"
    warmup: float = 0.0
    budget: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "epochs", "amount": None})
    train_seconds: float | None = None

    @property
    def scaling(self) -> LrScaling:
        return LrScaling.from_dict(self.lr_scaling)

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters.from_params(self.params, self.scaling)

    def lr_for(self, batch_size: int, rule: str | None = None) -> float:
        """The learning rate for ``batch_size``, rescaled from this configuration's lr.

        ``rule`` defaults to the study's ``--lr-scaling`` rule; for a study that searched lr
        directly, name one (``"linear"`` or ``"sqrt"``) to rescale with.
        """
        rule = rule or self.scaling.rule
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
        if self.warmup and not steps_per_epoch:
            raise BatchlrError(f"the study warms up for {self.warmup:g} epochs: pass steps_per_epoch to make_scheduler")
        return make_scheduler(optimizer, steps, self.schedule, round(self.warmup * (steps_per_epoch or 0)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> BestConfig:
    """A complete trial of a batchlr study as a :class:`BestConfig`."""
    settings = study.user_attrs
    return BestConfig(
        study=study.study_name,
        trial=trial.number,
        value=float(trial.values[0]),
        metric=settings.get("metric", METRIC),
        direction=study.directions[0].name.lower(),
        params=dict(trial.params),
        fold_scores=list(trial.user_attrs.get("fold_scores", [])),
        dataset=settings.get("dataset", "unknown"),
        model=settings.get("model", "unknown"),
        epochs=settings.get("epochs"),
        folds=int(settings.get("folds", 0)),
        versions={"batchlr": batchlr.__version__, "torch": str(torch.__version__), "optuna": optuna.__version__},
        lr_scaling=LrScaling.from_dict(settings).to_dict(),
        schedule=settings.get("schedule", "constant"),
        warmup=float(settings.get("warmup", 0.0)),
        budget={"kind": settings.get("budget", "epochs"), "amount": settings.get("steps") or settings.get("epochs")},
        train_seconds=trial.user_attrs.get("train_seconds"),
    )


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
    fields = dataclasses.fields(BestConfig)
    missing = [field.name for field in fields if field.name not in record and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:
        raise BatchlrError(f"{path} lacks {', '.join(missing)}; export it again with batchlr export")
    config = BestConfig(**{field.name: record[field.name] for field in fields if field.name in record})
    try:
        Hyperparameters.from_params(config.params, config.scaling)  # a bad file fails here, not at first use
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise BatchlrError(f"{path}: malformed params or lr_scaling ({error}); export it again with batchlr export") from None
    return config
