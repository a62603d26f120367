"""The options of the ``batchlr`` commands, declared once: their types, the options several
commands share, and study files (``run --config``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.micro_batches import AUTO
from batchlr.search.space import OPTIMIZER_NAMES, parse_optimizers, parse_range
from batchlr.studies.storage import DEFAULT_STORAGE, STORAGE_ENV

MAX_EPOCHS = 10_000
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class ParsedParam(click.ParamType):
    """An option value read by one of batchlr's parse functions, whose errors become click's."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name, self.parse = name, parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # already parsed
            return value
        try:
            return self.parse(str(value))
        except BatchlrError as error:
            self.fail(str(error), param, ctx)


def _micro_batch(text: str) -> int | str:
    if text == AUTO:
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise BatchlrUsageError(f"{text!r} is neither a positive number nor {AUTO}")


def _study_name(text: str) -> str:
    if not text.strip():
        raise BatchlrUsageError("--study is empty; give a name, or leave --study out for DATASET-MODEL")
    return text


def _objectives(text: str) -> tuple[str, ...]:
    if text not in ("accuracy", "accuracy,time"):
        raise BatchlrUsageError(f"{text!r}: use accuracy, or accuracy,time")
    return tuple(text.split(","))


BATCH_RANGE = ParsedParam("min:max", lambda text: parse_range(text, int))
LR_RANGE = ParsedParam("min:max|auto", lambda text: text if text == "auto" else parse_range(text, float))
OPTIMIZERS = ParsedParam("names", parse_optimizers)
MICRO_BATCH = ParsedParam("n|auto", _micro_batch)
OBJECTIVES = ParsedParam("accuracy|accuracy,time", _objectives)
STUDY_NAME = ParsedParam("name", _study_name)
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and scikit-learn accept

# Options and arguments several commands share, declared once.
STUDY_ARGUMENT = click.argument("study_name", metavar="STUDY")
STORAGE_OPTION = click.option("--storage", envvar=STORAGE_ENV, default=DEFAULT_STORAGE, show_envvar=True, help="Optuna storage URL: sqlite:///FILE or postgresql://USER@HOST/DB.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
DATA_DIR_OPTION = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"), envvar="BATCHLR_DATA_DIR", show_envvar=True, help="Where torchvision data sets are read from, or downloaded to (a resumed study and refit: where the study was created from).")
DEVICE_OPTION = click.option("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
SEED_OPTION = click.option("--seed", type=SEED, default=0, help="Seeds model initialisation and shuffles (and a new study's sampler, folds and hold-out).")
DATASET_OPTION = click.option("--dataset", default="digits", help="digits, mnist, fashion-mnist, cifar10, cifar2 or imagefolder:PATH.")
MODEL_OPTION = click.option("--model", default="convnet", help="convnet, convnet-bn, or package.module:function.")
OPTIMIZER_OPTION = click.option("--optimizer", type=click.Choice(OPTIMIZER_NAMES), default="adam", help="Optimizer to train with.")
MOMENTUM_OPTION = click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9, help="Momentum of sgd and rmsprop.")
BATCH_OPTION = click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Batch size to train with.")


def output_option(meaning: str, *, directory: bool = False) -> Decorator:
    """``--output``/``-o``: a file, or a directory."""
    path = click.Path(file_okay=not directory, dir_okay=directory, path_type=Path)
    return click.option("--output", "-o", type=path, required=True, help=meaning)


def options(*decorators: Decorator) -> Decorator:
    """Several options as one decorator, in the order given."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


DATA_OPTIONS = options(DATASET_OPTION, DATA_DIR_OPTION, MODEL_OPTION, DEVICE_OPTION, SEED_OPTION)


def given(ctx: click.Context, names: list[str]) -> set[str]:
    """The options the user set (a flag, the environment or a study file), not left at their defaults."""
    return {name for name in names if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)}


def read_config_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Make a study file's values the defaults of run's other options, so flags still override them."""
    if path is None:
        return
    from batchlr.studies.config import read_run_config

    names = {option.name: option.name for option in ctx.command.params if option.name != "config"} | {"study": "study_name"}
    values = {names[key]: value for key, value in read_run_config(path, names).items()}
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta["batchlr.config"] = values


def file_over_environment(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with a study file's value wherever only an environment variable set one.

    Click ranks the environment above its default map; batchlr ranks a study file above the
    environment, so that only flags override the file.
    """
    from_file = ctx.meta.get("batchlr.config", {})
    return values | {
        param.name: param.type_cast_value(ctx, from_file[param.name])
        for param in ctx.command.params
        if param.name in from_file and ctx.get_parameter_source(param.name) == ParameterSource.ENVIRONMENT
    }
