"""Study files: `batchlr run` options kept in TOML next to a project's code."""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import tomli_w

from batchlr.errors import BatchlrError, BatchlrUsageError

# Settings stored on a study whose values are ranges or lists; TOML may write them as arrays.
_RANGES = ("batch_size", "lr")
_LISTS = ("optimizers", "objectives")


def read_run_config(path: Path, options: Collection[str]) -> dict[str, Any]:
    """The options in a TOML study file, as the strings and numbers the CLI takes.

    Keys are option names with underscores (``n_trials``, ``batch_size``, ``study``). Ranges
    may be ``"16:512"`` or ``[16, 512]``; ``optimizers`` and ``objectives`` a string or an array.

    Raises:
        BatchlrUsageError: for a file that is missing or not TOML, or a key that is no option.
    """
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as error:
        raise BatchlrUsageError(f"--config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise BatchlrUsageError(f"--config {path} is not valid TOML: {error}") from None
    unknown = sorted(set(table) - set(options))
    if unknown:
        raise BatchlrUsageError(f"--config {path}: unknown key {', '.join(unknown)}; keys are run's options with underscores, e.g. n_trials")
    values = dict(table)
    for key in _RANGES:
        if isinstance(values.get(key), list):
            values[key] = ":".join(map(str, values[key]))
    for key in _LISTS:
        if isinstance(values.get(key), list):
            values[key] = ",".join(values[key])
    return values


def render_run_config(study: str, storage: str, settings: dict[str, Any]) -> str:
    """A TOML study file that makes ``batchlr run --config`` resume this study as it was created.

    ``settings`` are the study's user attrs; ``storage`` should already have its password masked.
    """
    table: dict[str, Any] = {"study": study, "storage": storage}
    for key in ("dataset", "model", "folds", "epochs", "budget", "steps", "batch_size", "lr", "optimizers",
                "lr_scaling", "reference_batch_size", "warmup", "schedule", "objectives", "seed",
                "max_micro_batch", "sampler", "pruner", "data_dir"):  # fmt: skip
        value = settings.get(key)
        if value is None:
            continue
        table[key] = ":".join(map(str, value)) if key in _RANGES else ",".join(value) if key in _LISTS else value
    if "dataset" not in table:
        raise BatchlrError(f"study {study!r} was not made by batchlr run; it has no settings to write")
    return tomli_w.dumps(table)
