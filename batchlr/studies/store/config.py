"""Study files: `batchlr run` options kept in TOML next to a project's code."""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import tomli_w

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.files import check_regular_file
from batchlr.studies.store.spec import CREATION_KEYS, META_KEYS, StudySpec


def read_run_config(path: Path, options: Collection[str]) -> dict[str, Any]:
    """The options in a TOML study file, keyed by option name with underscores (``n_trials``,
    ``batch_size``, ``study``), their values as TOML gave them: whether each suits its option
    is for the CLI to check (``batchlr.cli_options``).

    Raises:
        BatchlrUsageError: for a file that is missing, not a regular file (a FIFO would block
            the read for ever) or not TOML, or a key that is no option.
    """
    try:
        check_regular_file(path, "--config")
    except BatchlrError as error:
        raise BatchlrUsageError(str(error)) from error
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as error:
        raise BatchlrUsageError(f"--config {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise BatchlrUsageError(f"--config {path} is not valid TOML: {error}") from error
    unknown = sorted(set(table) - set(options))
    if unknown:
        raise BatchlrUsageError(
            f"--config {path}: unknown key {', '.join(unknown)}; keys are run's options with underscores, e.g. n_trials"
        )
    return table


def _option_text(values: list[Any]) -> str:
    return (
        ":".join(map(str, values))
        if all(isinstance(value, (int, float)) for value in values)
        else ",".join(map(str, values))
    )


def render_run_config(study: str, storage: str, spec: StudySpec) -> str:
    """A TOML study file that makes ``batchlr run --config`` resume this study as it was created.

    ``storage`` should already have its password masked. The folds' seed is written as
    ``seed``, so that the file also recreates the study elsewhere.
    """
    settings = {
        key: value
        for key, value in spec.to_attrs().items()
        if key not in CREATION_KEYS | set(META_KEYS)
    }
    # The settings whose option text is not a range or a list of names.
    settings["augment"] = ",".join(spec.training.augment) or "none"
    settings["image_size"] = (
        f"{spec.image_size[0]}x{spec.image_size[1]}" if spec.image_size else None
    )
    if spec.lr_find:
        # The ranges --lr auto found are the study's; elsewhere the file runs the tests anew.
        settings["lr"] = "auto"
    table = {"study": study, "storage": storage, **settings, "seed": spec.seed}
    return tomli_w.dumps(
        {
            key: _option_text(value) if isinstance(value, list) else value
            for key, value in table.items()
            if value is not None
        }
    )
