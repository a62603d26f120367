"""Reading a file written by ``batchlr export`` back, in another project: every field checked,
and exports of earlier releases read as today's."""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from batchlr.errors import BatchlrError
from batchlr.files import check_regular_file
from batchlr.objectives.settings import BUDGET_KINDS
from batchlr.rules import is_finite_number, is_whole_number
from batchlr.search.ridge import Ridge, RidgeFit
from batchlr.search.space import Hyperparameters
from batchlr.studies.deploy.best_config import BestConfig
from batchlr.studies.results.band import Band
from batchlr.studies.store.data_facts import DataFacts
from batchlr.studies.store.spec import StudySpec

MAX_CONFIG_BYTES = 1 << 20
"""An export is a few kilobytes; a file above this is no export and is refused unparsed."""


def load_config(path: str | Path) -> BestConfig:
    """Read a file written by ``batchlr export``: JSON for .json, YAML (which reads JSON too) otherwise.

    Raises:
        BatchlrError: in one line, for a file that cannot be read, and for any file that is not
            an export: not UTF-8, over :data:`MAX_CONFIG_BYTES`, not JSON or YAML, nested too
            deeply, or whose record lacks a field or holds a value of the wrong type or range
            (see :data:`FIELD_RULES`, :meth:`StudySpec.from_attrs`, :meth:`Hyperparameters.from_params`).
    """
    path = check_regular_file(Path(path), "export file")  # a FIFO would block for ever
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
        ridge=_ridges(record.get("ridge") or {}),
        band=None if record.get("band") is None else Band.from_record(record["band"]),
        data=None if record.get("data") is None else DataFacts.from_record(record["data"]),
        noise_scale=_noise_scale(record.get("noise_scale")),
        throughput=_table(record.get("throughput"), "throughput"),
    )
    # checks the params: a bad file fails here, not at first use
    Hyperparameters.from_params(config.params, config.settings.space)
    return config


def _ridges(record: Any) -> dict[str, RidgeFit]:
    """The ridge fits of an export: per optimizer a ridge's record, or the reason there is none."""
    if not isinstance(record, Mapping):
        raise BatchlrError(f"ridge = {reprlib.repr(record)} is not a table of optimizers")
    fits = {}
    for optimizer, entry in record.items():
        if isinstance(entry, Mapping) and set(entry) == {"reason"}:
            fits[optimizer] = RidgeFit(str(optimizer), None, str(entry["reason"]))
        else:
            fits[optimizer] = RidgeFit(str(optimizer), Ridge.from_record(entry))
    return fits


def _table(value: Any, name: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, Mapping):
        raise BatchlrError(f"{name} = {reprlib.repr(value)} is not a table")
    return None if value is None else dict(value)


def _noise_scale(value: Any) -> float | None:
    if value is not None and not (is_finite_number(value) and value > 0):
        raise BatchlrError(f"noise_scale = {reprlib.repr(value)} is not a positive number")
    return None if value is None else float(value)


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
