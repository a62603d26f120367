"""The options of the ``batchlr`` commands, declared once: their types, the options several
commands share, and study files (``run --config``)."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.micro_batches import AUTO
from batchlr.objectives.settings import parse_augment, parse_image_size
from batchlr.search.grid import parse_grid_points
from batchlr.search.space import (
    OPTIMIZER_NAMES,
    SEED_LIMIT,
    parse_lr_range,
    parse_optimizers,
    parse_range,
)
from batchlr.search.weight_decay import parse_weight_decay
from batchlr.studies.store import DEFAULT_STORAGE, STORAGE_ENV, remember_secrets
from batchlr.whole_numbers import whole_number

MAX_HEARTBEAT = (
    86_400  # a day: a trial silent for two is surely dead, and Python's waits overflow far above
)
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

if TYPE_CHECKING:
    _AnyParamType = click.ParamType[Any]
else:  # ParamType is generic only in newer click releases than the 8.1 batchlr allows
    _AnyParamType = click.ParamType


class ParsedParam(_AnyParamType):
    """An option value read by one of batchlr's parse functions, whose errors become click's.

    ``joiner`` makes a study file's array the option's text: ``":"`` for a range
    (``[16, 512]`` is ``16:512``), ``","`` for a list (``["adam", "sgd"]`` is ``adam,sgd``);
    an option without one takes no array.
    """

    def __init__(self, name: str, parse: Callable[[str], Any], joiner: str | None = None) -> None:
        self.name, self.parse, self.joiner = name, parse, joiner

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # already parsed
            return value
        try:
            return self.parse(str(value))
        except BatchlrError as error:
            self.fail(str(error), param, ctx)


class FiniteFloatRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses nan and infinities, which pass its bounds
    (every comparison with nan is false) and would make a timeout or a momentum meaningless."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# The parsers below only read the text; TrainingSettings judges the values, once.
def _micro_batch(text: str) -> int | str:
    if text == AUTO:
        return text
    number = whole_number(text)
    if number is None:
        raise BatchlrUsageError(f"{text!r} is neither a whole number nor {AUTO}")
    return number


def _study_name(text: str) -> str:
    if not text.strip():
        raise BatchlrUsageError(
            "--study is empty; give a name, or leave --study out for DATASET-MODEL"
        )
    return text


def _objectives(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(","))


BATCH_RANGE = ParsedParam("min:max", lambda text: parse_range(text, int), joiner=":")
LR_RANGE = ParsedParam(
    "min:max|auto", lambda text: text if text == "auto" else parse_lr_range(text), joiner=":"
)
OPTIMIZERS = ParsedParam("names", parse_optimizers, joiner=",")
MICRO_BATCH = ParsedParam("n|auto", _micro_batch)
OBJECTIVES = ParsedParam("accuracy|accuracy,time", _objectives, joiner=",")
STUDY_NAME = ParsedParam("name", _study_name)
IMAGE_SIZE = ParsedParam("n|hxw", parse_image_size)
AUGMENT = ParsedParam("none|flip|crop|flip,crop", parse_augment, joiner=",")
WEIGHT_DECAY = ParsedParam("w|min:max", parse_weight_decay, joiner=":")
GRID_POINTS = ParsedParam("name=n,...", parse_grid_points, joiner=",")
SEED = click.IntRange(0, SEED_LIMIT - 1)

# Options and arguments several commands share, declared once.
STUDY_ARGUMENT = click.argument("study_name", metavar="STUDY")
TRUST_CODE_OPTION = click.option(
    "--trust-model-code",
    "trust_code",
    is_flag=True,
    help="Build a model file's package.module:function model, which imports and runs that module.",
)
MODEL_FILE_ARGUMENT = click.argument(
    "model_file", metavar="MODEL", type=click.Path(dir_okay=False, path_type=Path)
)


def _note_storage(ctx: click.Context, param: click.Parameter, url: str) -> str:
    """Keep the storage URL where the error handler can find it, to name a fault of its disk."""
    ctx.meta["batchlr.storage"] = url
    return url


STORAGE_OPTION = click.option(
    "--storage",
    envvar=STORAGE_ENV,
    default=DEFAULT_STORAGE,
    show_envvar=True,
    callback=_note_storage,
    help="Optuna storage URL: sqlite:///FILE or postgresql://USER@HOST/DB.",
)
ARTIFACTS_OPTION = click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BATCHLR_ARTIFACTS",
    show_envvar=True,
    help=(
        "The studies' artifact store, which optuna-dashboard shows.  "
        "[default: NAME-artifacts beside a SQLite file NAME.db; none for PostgreSQL]"
    ),
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    envvar="BATCHLR_DATA_DIR",
    show_envvar=True,
    help=(
        "Where torchvision data sets are read from, or downloaded to (a resumed study and refit: "
        "where the study was created from)."
    ),
)
IMAGE_SIZE_OPTION = click.option(
    "--image-size",
    type=IMAGE_SIZE,
    help=(
        "Resize every image to N x N (or H x W) while loading: the shorter side scaled, then a "
        "centre crop.  [default: images as they are, all one size]"
    ),
)
CACHE_DIR_OPTION = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BATCHLR_CACHE_DIR",
    show_envvar=True,
    help="Where decoded image folders are cached, so the next run loads in a second.  [default: ~/.cache/batchlr]",
)
DEVICE_OPTION = click.option(
    "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."
)
SEED_OPTION = click.option(
    "--seed",
    type=SEED,
    default=0,
    help="Seeds model initialisation and shuffles (and a new study's sampler, folds and hold-out).",
)
DATASET_OPTION = click.option(
    "--dataset",
    default="digits",
    help="digits, mnist, fashion-mnist, cifar10, cifar2 or imagefolder:PATH.",
)
MODEL_OPTION = click.option(
    "--model",
    default="convnet",
    help=(
        "convnet, convnet-bn, resnet20, any torchvision classification model by name (untrained; "
        "e.g. resnet18, mobilenet_v3_small; grey images are repeated to 3 channels), or "
        "package.module:function."
    ),
)
OPTIMIZER_OPTION = click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZER_NAMES),
    default="adam",
    help="Optimizer to train with.",
)
MOMENTUM_OPTION = click.option(
    "--momentum",
    type=FiniteFloatRange(0, 1, max_open=True),
    default=0.9,
    help="Momentum of sgd and rmsprop.",
)
BATCH_OPTION = click.option(
    "--batch-size", type=click.IntRange(min=1), default=64, help="Batch size to train with."
)


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


ATTACH_OPTIONS = options(
    click.option(
        "--study",
        "study_name",
        type=STUDY_NAME,
        help=(
            "Train in this study's regime (its data, model, precision, augmentation, label "
            "smoothing and micro-batch cap) and attach the curve (PNG) to its artifacts, which "
            "optuna-dashboard shows."
        ),
    ),
    STORAGE_OPTION,
    ARTIFACTS_OPTION,
)
DATA_OPTIONS = options(
    DATASET_OPTION,
    DATA_DIR_OPTION,
    IMAGE_SIZE_OPTION,
    CACHE_DIR_OPTION,
    MODEL_OPTION,
    DEVICE_OPTION,
    SEED_OPTION,
)


def given(ctx: click.Context, names: list[str]) -> set[str]:
    """The options the user set (a flag, the environment or a study file), not left at their defaults."""
    return {
        name
        for name in names
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    }


def read_config_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Make a study file's values the defaults of run's other options, so flags still override them."""
    if path is None:
        return
    from batchlr.studies.store import read_run_config

    params = {
        option.name: option
        for option in ctx.command.params
        if option.name and option.name != "config"
    }
    names = {name: name for name in params} | {"study": "study_name"}
    try:
        table = read_run_config(path, names)
    except UnicodeDecodeError as error:
        raise BatchlrUsageError(f"--config {path} is not UTF-8 text; save it as UTF-8") from error
    except RecursionError as error:
        raise BatchlrUsageError(
            f"--config {path} nests too deeply; a study file holds only option = value lines"
        ) from error
    values = {
        names[key]: _file_value(params[names[key]], key, value, path)
        for key, value in table.items()
    }
    remember_secrets(str(values.get("storage", "")))
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta["batchlr.config"] = values


def _file_value(param: click.Parameter, key: str, value: Any, path: Path) -> Any:
    """A study file's value, once its TOML type suits the option (an array joined into the
    option's text, see :class:`ParsedParam`); click converts it from there.

    Every key of a study file passes here. Click converts with int() or str(), which would
    make ``folds = 2.7`` a silent 2 and a table or a date an error deep inside a run; and
    an array joined for any option made ``study = ["a", "b"]`` a study named "a,b".
    """
    kind = param.type
    if isinstance(value, list):
        joiner = kind.joiner if isinstance(kind, ParsedParam) else None
        if joiner is None:
            raise BatchlrUsageError(
                f"--config {path}: {key} = {reprlib.repr(value)} is a list; {key} takes one value"
            )
        if not all(
            isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value
        ):
            raise BatchlrUsageError(
                f"--config {path}: {key} = {reprlib.repr(value)} is not a list of strings or numbers"
            )
        return joiner.join(map(str, value))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(param, click.Option) and param.is_flag:
        expected, fits = "true or false", isinstance(value, bool)
    elif isinstance(kind, click.types.IntParamType):
        expected, fits = "a whole number", number and isinstance(value, int)
    elif isinstance(kind, click.types.FloatParamType):
        expected, fits = "a number", number
    elif isinstance(kind, ParsedParam):  # their parsers take numbers too, e.g. max_micro_batch = 64
        expected, fits = f"a string ({kind.name}) or a number", number or isinstance(value, str)
    else:
        expected, fits = "a string", isinstance(value, str)
    if not fits:
        raise BatchlrUsageError(f"--config {path}: {key} = {reprlib.repr(value)} is not {expected}")
    return value


def file_over_environment(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with a study file's value wherever only an environment variable set one.

    Click ranks the environment above its default map; batchlr ranks a study file above the
    environment, so that only flags override the file.
    """
    from_file = ctx.meta.get("batchlr.config", {})
    return values | {
        param.name: param.type_cast_value(ctx, from_file[param.name])
        for param in ctx.command.params
        if param.name in from_file
        and ctx.get_parameter_source(param.name) == ParameterSource.ENVIRONMENT
    }
