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
from batchlr.search.space import Hyperparameters
from batchlr.studies.spec import METRIC
from batchlr.studies.summary import best_complete_trial

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
    epochs: int
    folds: int
    versions: dict[str, str]

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters.from_params(self.params)

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def best_config(study: optuna.Study) -> BestConfig:
    """The best complete trial of a batchlr study as a :class:`BestConfig`."""
    best = best_complete_trial(study)
    settings = study.user_attrs
    return BestConfig(
        study=study.study_name,
        trial=best.number,
        value=float(best.value),
        metric=settings.get("metric", METRIC),
        direction=study.direction.name.lower(),
        params=dict(best.params),
        fold_scores=list(best.user_attrs.get("fold_scores", [])),
        dataset=settings.get("dataset", "unknown"),
        model=settings.get("model", "unknown"),
        epochs=int(settings.get("epochs", 0)),
        folds=int(settings.get("folds", 0)),
        versions={"batchlr": batchlr.__version__, "torch": str(torch.__version__), "optuna": optuna.__version__},
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
    names = [field.name for field in dataclasses.fields(BestConfig)]
    missing = [name for name in names if name not in record]
    if missing:
        raise BatchlrError(f"{path} lacks {', '.join(missing)}; export it again with batchlr export")
    Hyperparameters.from_params(record["params"])  # a bad file fails here, not at first use
    return BestConfig(**{name: record[name] for name in names})
