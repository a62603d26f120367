"""The record of everything a study was created with: read and written here, and nowhere else.

A study stores its :class:`StudySpec` as flat Optuna user attrs (optuna-dashboard shows
them) keyed like ``batchlr run``'s options with underscores (``batch_size``, ``lr_scaling``),
so that the same keys serve the command line, study files and the storage. Nested parts
(the search space, the training settings, the budget) flatten into that one namespace;
:meth:`StudySpec.to_attrs` and :meth:`StudySpec.from_attrs` are the only conversions.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Collection, Mapping
from pathlib import Path, PurePath
from typing import Any, Literal

import batchlr
from batchlr.errors import BatchlrError, BatchlrUsageError, SettingError
from batchlr.objectives.settings import MAX_IMAGE_SIDE, TrainingSettings
from batchlr.rules import is_finite_number, is_whole_number, one_of, require, whole
from batchlr.search import PRUNER_NAMES, SAMPLER_NAMES, PrunerName, SamplerName
from batchlr.search.grid import grid_point_counts
from batchlr.search.space import SEED_LIMIT, SearchSpace

FORMAT_VERSION = 6
"""Version of the stored attrs. 1: batchlr 0.1.0 (the same keys, plus ``momentum``, without
this version); 3 added the image size, augmentation and regularisation, which a batchlr of
format 2 would silently drop; 4 added the precision; 5 the ``noise`` lr scaling rule and its
measured ``noise_scale``; 6 an lr range per optimizer (``lr_ranges``, ``lr`` null) and
``lr_find`` keyed by optimizer. A study of a newer format than this is
refused rather than misread."""

SETTINGS_BEFORE_THEIR_OPTION = {"precision": "fp32"}
"""What a study or exported file written before a setting existed trained with: a study of
format 3 trained in float32, and resumes so, whatever the new default is."""

METRIC = "accuracy"
# Optuna directions and metric names for each entry of --objectives.
Direction = Literal["minimize", "maximize"]
DIRECTIONS: dict[str, Direction] = {"accuracy": "maximize", "time": "minimize"}
METRIC_NAMES = {"accuracy": "accuracy", "time": "train_seconds"}

# Stored beside the settings, for readers of the storage; no setting.
META_KEYS = ("batchlr_format", "batchlr_version", "metric")
# Settings a later run may change for itself (its option overrides the stored value).
PER_RUN_KEYS = frozenset({"sampler", "grid_points", "pruner", "data_dir", "max_micro_batch"})
# Settings fixed when the study is created and never given again: the folds' seed and the
# LR range test of --lr auto. Every other setting must match when a resumed run gives it.
CREATION_KEYS = frozenset({"seed", "lr_find", "lr_ranges", "noise_scale"})

MAX_FOLDS = 100
"""The most cross-validation folds a study may have: each fold trains a model every trial."""


# StudySpec's defaults of its nested parts: instances, not default factories, since
# _unflatten reads each part's type from its field's default.
DEFAULT_SPACE = SearchSpace()
DEFAULT_TRAINING = TrainingSettings()


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What every trial of a study shares, and how the study was created.

    ``seed`` is the seed the folds and the hold-out were drawn with. ``sampler``, ``pruner``,
    ``data_dir`` and ``training.max_micro_batch`` are what the creating run used; a later
    run may override them for itself. ``lr_find`` holds, per optimizer, the LR range test of
    ``--lr auto`` (suggested_lr, loss_drop, batch_size, momentum and the spread of its
    suggestion over two seeds), or is ``None``. ``image_size``
    is the (height, width) every image is resized to, or ``None`` for images as they are.
    """

    dataset: str = "digits"
    image_size: tuple[int, int] | None = None
    model: str = "convnet"
    folds: int = 3
    space: SearchSpace = DEFAULT_SPACE
    training: TrainingSettings = DEFAULT_TRAINING
    seed: int = 0
    sampler: SamplerName = "ridge"
    grid_points: str | None = None
    pruner: PrunerName = "asha"
    data_dir: Path = Path("data")
    lr_find: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        require(
            isinstance(self.dataset, str) and bool(self.dataset),
            "dataset",
            self.dataset,
            "give a data set name",
        )
        if self.image_size is not None:
            sides = self.image_size
            require(
                isinstance(sides, (list, tuple))
                and len(sides) == 2
                and all(is_whole_number(side) and 1 <= side <= MAX_IMAGE_SIDE for side in sides),
                "image_size",
                sides,
                f"give HEIGHT and WIDTH of whole numbers from 1 to {MAX_IMAGE_SIDE}",
            )
        require(
            isinstance(self.model, str) and bool(self.model),
            "model",
            self.model,
            "give a model name",
        )
        whole("folds", self.folds, 2, MAX_FOLDS)
        whole("seed", self.seed, 0, SEED_LIMIT - 1)
        one_of("sampler", self.sampler, SAMPLER_NAMES)
        if self.grid_points is not None:
            require(
                isinstance(self.grid_points, str),
                "grid_points",
                self.grid_points,
                "give NAME=N pairs",
            )
            grid_point_counts(self.grid_points)
        one_of("pruner", self.pruner, PRUNER_NAMES)
        require(
            isinstance(self.data_dir, (str, PurePath)), "data_dir", self.data_dir, "give a path"
        )
        require(
            self.lr_find is None
            or (
                isinstance(self.lr_find, Mapping)
                and all(
                    isinstance(optimizer, str) and _is_record(record)
                    for optimizer, record in self.lr_find.items()
                )
            ),
            "lr_find",
            self.lr_find,
            "give each optimizer's LR range test as a record of numbers",
        )

    def to_attrs(self) -> dict[str, Any]:
        """The settings as JSON values keyed like the options, with the format version."""
        return {
            **_flatten(self),
            "batchlr_format": FORMAT_VERSION,
            "batchlr_version": batchlr.__version__,
            "metric": METRIC,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StudySpec:
        """Read :meth:`to_attrs` (of any format up to :data:`FORMAT_VERSION`) or option values;
        a missing or null key takes its default, keys that are no setting are ignored.
        Settings written down before go through :meth:`read`, which gives a setting missing
        from an older format what it trained with then (:data:`SETTINGS_BEFORE_THEIR_OPTION`).

        Raises:
            BatchlrError: for attrs of a newer format.
            SettingError: for a setting of the wrong type or out of its range, naming its key.
        """
        version = attrs.get("batchlr_format", 1)
        if not is_whole_number(version):
            raise BatchlrError(f"batchlr_format {reprlib.repr(version)} is no format version")
        if version > FORMAT_VERSION:
            raise BatchlrError(
                f"this study was written by a newer batchlr (format {version}); upgrade batchlr to read it"
            )
        keys = set(setting_keys())
        given = {key: value for key, value in attrs.items() if not (value is None and key in keys)}
        found = given.get("lr_find")
        if version < 6 and isinstance(found, Mapping) and isinstance(found.get("optimizer"), str):
            # Format 5 and before ran the range test with one optimizer, its record flat.
            record = {key: value for key, value in found.items() if key != "optimizer"}
            given["lr_find"] = {found["optimizer"]: record}
        spec: StudySpec = _unflatten(cls, given)
        return spec

    @classmethod
    def read(cls, attrs: Mapping[str, Any], source: str) -> StudySpec:
        """:meth:`from_attrs` of settings written down before (a study's, an exported file's):
        one written before a setting existed trains as it did then (see
        :data:`SETTINGS_BEFORE_THEIR_OPTION`), and a setting outside its rule is damage there,
        not a usage error.

        Raises:
            BatchlrError: naming ``source`` and the setting.
        """
        try:
            return cls.from_attrs({**SETTINGS_BEFORE_THEIR_OPTION, **attrs})
        except SettingError as error:
            raise BatchlrError(f"{source} holds a damaged setting: {error}") from error

    @property
    def directions(self) -> list[Direction]:
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
        if default is not dataclasses.MISSING and hasattr(default, "from_attrs"):
            values[field.name] = type(default).from_attrs(attrs)
        elif dataclasses.is_dataclass(default):
            values[field.name] = _unflatten(type(default), attrs)
        elif field.name in attrs:
            values[field.name] = _typed(attrs[field.name], default)
    return kind(**values)


def _is_record(record: Any) -> bool:
    """True for a mapping of names to numbers (or None)."""
    return isinstance(record, Mapping) and all(
        isinstance(key, str) and (item is None or is_finite_number(item))
        for key, item in record.items()
    )


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    return str(value) if isinstance(value, Path) else value


def _typed(value: Any, default: Any) -> Any:
    """A JSON value (or an option's) as the type of the field's default, where it is of a kind
    that converts; anything else as it is, for the record's rule to refuse."""
    if isinstance(value, (list, tuple)):
        element = default[0] if isinstance(default, tuple) and default else None
        return tuple(_typed(item, element) for item in value)
    if isinstance(default, Path) and isinstance(value, (str, PurePath)):
        return Path(value)
    if isinstance(default, float) and is_whole_number(value) and is_finite_number(value):
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
    returns the data set as a study stores it (see :func:`batchlr.objectives.data.datasets.check_dataset_name`)."""
    from batchlr.objectives.data import check_dataset_name
    from batchlr.objectives.models import resolve_model

    resolve_model(model)
    return check_dataset_name(dataset)


def reconcile(
    stored: StudySpec | None, requested: StudySpec, given: Collection[str], study: str
) -> StudySpec:
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
        if (
            key in given
            and key not in PER_RUN_KEYS | CREATION_KEYS
            and _comparable(key, old[key]) != _comparable(key, new[key])
        ):
            created = created_lr(stored) if key == "lr" else _show(old[key])
            raise BatchlrUsageError(
                f"study {study!r} was created with {option_name(key)} {created}, not {_show(new[key])}; "
                f"drop {option_name(key)} to resume it, or choose a new --study name"
            )
    return StudySpec.from_attrs({**old, **{key: new[key] for key in PER_RUN_KEYS & set(given)}})


def _comparable(key: str, value: Any) -> Any:
    # The optimizers are a set to the search: "adam,sgd" resumes a study made with "sgd,adam".
    return sorted(value) if key == "optimizers" else value


def created_lr(stored: StudySpec) -> str:
    """The ``--lr`` a study was created with, as an error about resuming it names it: its one
    range, or ``auto`` or unset with the range of each optimizer."""
    attrs = stored.to_attrs()
    if attrs["lr"]:
        return _show(attrs["lr"])
    # A study of format 6 without one --lr holds a range per optimizer, found by --lr auto or not.
    ranges = ", ".join(
        f"{name} {low:g}:{high:g}" for name, (low, high) in attrs["lr_ranges"].items()
    )
    return f"auto ({ranges})" if attrs["lr_find"] else f"unset, a range per optimizer ({ranges})"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return (
            ":".join(map(str, value))
            if len(value) == 2 and not isinstance(value[0], str)
            else ",".join(value)
        )
    return "(not set)" if value is None else str(value)
