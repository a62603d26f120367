"""The record of everything a study was created with: read and written here, and nowhere else.

A study stores its :class:`StudySpec` as flat Optuna user attrs (optuna-dashboard shows
them) keyed like ``batchlr run``'s options with underscores (``batch_size``, ``lr_scaling``),
so that the same keys serve the command line, study files and the storage. Nested parts
(the search space, the training settings, the budget) flatten into that one namespace;
:meth:`StudySpec.to_attrs` and :meth:`StudySpec.from_attrs` are the only conversions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

import batchlr
from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.settings import TrainingSettings
from batchlr.search.space import SearchSpace

if TYPE_CHECKING:  # torch and scikit-learn load where data is: reading a study's settings needs neither
    from batchlr.objectives.folds import FoldAssignment

FORMAT_VERSION = 2
"""Version of the stored attrs. 1: batchlr 0.1.0 (the same keys, plus ``momentum``, without
this version); a study of a newer format than this is refused rather than misread."""

METRIC = "accuracy"
# Optuna directions and metric names for each entry of --objectives.
DIRECTIONS = {"accuracy": "maximize", "time": "minimize"}
METRIC_NAMES = {"accuracy": "accuracy", "time": "train_seconds"}

# Stored beside the settings, for readers of the storage; no setting.
META_KEYS = ("batchlr_format", "batchlr_version", "metric")
# Settings a later run may change for itself (its option overrides the stored value).
PER_RUN_KEYS = frozenset({"sampler", "pruner", "data_dir", "max_micro_batch"})
# Settings fixed when the study is created and never given again: the folds' seed and the
# LR range test of --lr auto. Every other setting must match when a resumed run gives it.
CREATION_KEYS = frozenset({"seed", "lr_find"})

FOLDS_ATTR = "batchlr:folds"
LABELS_ATTR = "batchlr:labels"
SPEC_WAIT_SECONDS = 30


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What every trial of a study shares, and how the study was created.

    ``seed`` is the seed the folds and the hold-out were drawn with. ``sampler``, ``pruner``,
    ``data_dir`` and ``training.max_micro_batch`` are what the creating run used; a later
    run may override them for itself. ``lr_find`` is the LR range test of ``--lr auto``
    (suggested_lr, loss_drop, batch_size, optimizer, momentum), or ``None``.
    """

    dataset: str = "digits"
    model: str = "convnet"
    folds: int = 3
    space: SearchSpace = SearchSpace()
    training: TrainingSettings = TrainingSettings()
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "median"
    data_dir: Path = Path("data")
    lr_find: dict[str, Any] | None = None

    def to_attrs(self) -> dict[str, Any]:
        """The settings as JSON values keyed like the options, with the format version."""
        return {**_flatten(self), "batchlr_format": FORMAT_VERSION, "batchlr_version": batchlr.__version__, "metric": METRIC}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StudySpec:
        """Read :meth:`to_attrs` (of any format up to :data:`FORMAT_VERSION`) or option values;
        a missing key takes its default.

        Raises:
            BatchlrError: for attrs batchlr did not write, or of a newer format.
        """
        version = attrs.get("batchlr_format", 1)
        if version > FORMAT_VERSION:
            raise BatchlrError(f"this study was written by a newer batchlr (format {version}); upgrade batchlr to read it")
        return _unflatten(cls, attrs)

    @property
    def directions(self) -> list[str]:
        return [DIRECTIONS[name] for name in self.training.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [METRIC_NAMES[name] for name in self.training.objectives]

    def default_study_name(self) -> str:
        from batchlr.objectives.data import dataset_slug

        return f"{dataset_slug(self.dataset)}-{self.model.replace(':', '.')}"


def _flatten(record: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if hasattr(value, "to_attrs"):
            attrs.update(value.to_attrs())
        elif dataclasses.is_dataclass(value):
            attrs.update(_flatten(value))
        else:
            attrs[field.name] = _json(value)
    return attrs


def _unflatten(kind: type, attrs: Mapping[str, Any]) -> Any:
    values = {}
    for field in dataclasses.fields(kind):
        default = field.default
        if hasattr(default, "from_attrs"):
            values[field.name] = type(default).from_attrs(attrs)
        elif dataclasses.is_dataclass(default):
            values[field.name] = _unflatten(type(default), attrs)
        elif field.name in attrs:
            values[field.name] = _typed(attrs[field.name], default)
    return kind(**values)


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _typed(value: Any, default: Any) -> Any:
    """A JSON value (or an option's) as the type of the field's default."""
    if value is None:
        return None
    if isinstance(default, tuple):
        return tuple(value)
    if isinstance(default, Path):
        return Path(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def setting_keys() -> list[str]:
    """Every setting's key, in the order :meth:`StudySpec.to_attrs` writes them."""
    return list(_flatten(StudySpec()))


def option_name(key: str) -> str:
    """The ``batchlr run`` option of a setting's key: ``batch_size`` is ``--batch-size``."""
    return "--" + key.replace("_", "-")


def check_names(dataset: str, model: str) -> str:
    """Fail fast, before any data loads, on a data set or model name batchlr cannot resolve;
    returns the data set as a study stores it (see :func:`batchlr.objectives.data.check_dataset_name`)."""
    from batchlr.objectives.data import check_dataset_name
    from batchlr.objectives.models import resolve_model

    resolve_model(model)
    return check_dataset_name(dataset)


def reconcile(stored: StudySpec | None, requested: StudySpec, given: Collection[str], study: str) -> StudySpec:
    """The spec a run uses: the stored one when the study exists, else the requested one.

    Of the settings the user gave explicitly (``given``, setting keys), those in
    :data:`PER_RUN_KEYS` override the stored ones for this run, and the others must match
    the stored study; settings not given take the stored values, so ``batchlr run --study S``
    resumes S as it was created.

    Raises:
        BatchlrUsageError: naming the first setting that differs.
    """
    if stored is None:
        return requested
    old, new = stored.to_attrs(), requested.to_attrs()
    for key in setting_keys():
        if key in given and key not in PER_RUN_KEYS | CREATION_KEYS and _comparable(key, old[key]) != _comparable(key, new[key]):
            raise BatchlrUsageError(
                f"study {study!r} was created with {option_name(key)} {_show(old[key])}, not {_show(new[key])}; "
                f"drop {option_name(key)} to resume it, or choose a new --study name"
            )
    return StudySpec.from_attrs({**old, **{key: new[key] for key in PER_RUN_KEYS & set(given)}})


def _comparable(key: str, value: Any) -> Any:
    # The optimizers are a set to the search: "adam,sgd" resumes a study made with "sgd,adam".
    return sorted(value) if key == "optimizers" else value


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ":".join(map(str, value)) if len(value) == 2 and not isinstance(value[0], str) else ",".join(value)
    return "(not set)" if value is None else str(value)


def save_spec(
    storage: optuna.storages.BaseStorage, study: str, spec: StudySpec, folds: FoldAssignment, labels_fingerprint: str
) -> None:
    """Store the spec as user attrs and the folds as system attrs."""
    study_id = storage.get_study_id_from_name(study)
    for key, value in spec.to_attrs().items():
        storage.set_study_user_attr(study_id, key, value)
    storage.set_study_system_attr(study_id, FOLDS_ATTR, folds.encode())
    # Written last: load_spec treats a study without it as one being created or not batchlr's.
    storage.set_study_system_attr(study_id, LABELS_ATTR, labels_fingerprint)


def save_micro_batch_cap(study: optuna.Study, cap: int) -> None:
    """Keep the cap a later run found for a study created without one, for the runs after it."""
    study.set_user_attr("max_micro_batch", cap)


def load_spec(
    storage: optuna.storages.BaseStorage, study: str, wait: float = SPEC_WAIT_SECONDS
) -> tuple[StudySpec, FoldAssignment, str] | None:
    """The stored spec, folds and labels fingerprint of ``study``; ``None`` when it does not exist.

    A study that exists without them may be one another worker is creating right now: wait
    up to ``wait`` seconds for its spec to appear.

    Raises:
        BatchlrError: when the study exists but batchlr did not create it.
    """
    from batchlr.objectives.folds import FoldAssignment

    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        return None
    deadline = time.monotonic() + wait
    while LABELS_ATTR not in (system := storage.get_study_system_attrs(study_id)):
        # A study being created has no trials yet: batchlr saves the spec before the first.
        if time.monotonic() > deadline or storage.get_n_trials(study_id) > 0:
            raise BatchlrError(f"study {study!r} exists but was not made by batchlr run; choose another --study name")
        time.sleep(0.5)
    spec = StudySpec.from_attrs(storage.get_study_user_attrs(study_id))
    return spec, FoldAssignment.decode(system[FOLDS_ATTR]), system[LABELS_ATTR]


def study_spec(study: optuna.Study) -> StudySpec:
    """The spec of a study batchlr made, for commands that only read it.

    Raises:
        BatchlrError: when the study holds no batchlr settings.
    """
    if "dataset" not in study.user_attrs:
        raise BatchlrError(f"study {study.study_name!r} was not made by batchlr run; it has no settings")
    return StudySpec.from_attrs(study.user_attrs)
