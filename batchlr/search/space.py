"""The search space over batch size, learning rate and optimizer, and the values a trial draws."""

from __future__ import annotations

import dataclasses
import math
import reprlib
from collections.abc import Mapping
from typing import Any, Literal, get_args

import optuna

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.rules import (
    is_finite_number,
    is_real,
    is_whole_number,
    names_of,
    one_of,
    require,
)
from batchlr.search.grid import Number, log_ladder, log_points
from batchlr.search.lr_scaling import NO_LR_SCALING, LrScaling
from batchlr.search.weight_decay import NO_WEIGHT_DECAY, SWITCH_PARAM, WeightDecay

OptimizerName = Literal["sgd", "adam", "rmsprop", "adamw"]
OPTIMIZER_NAMES: tuple[OptimizerName, ...] = get_args(OptimizerName)
"""Optimizers a study can search, by the names stored in the ``optimizer`` param; ``adamw`` is
Adam with decoupled weight decay (Loshchilov and Hutter 2019)."""

DEFAULT_OPTIMIZERS: tuple[OptimizerName, ...] = OPTIMIZER_NAMES[:3]
"""What a study searches unless told: ``adamw`` only where named, so that studies made before
it search what they did."""

MOMENTUM_OPTIMIZERS: frozenset[str] = frozenset({"sgd", "rmsprop"})
"""Optimizers whose momentum is searched too; Adam's betas play that role and stay at defaults."""

MOMENTUM_RANGE: tuple[float, float] = (0.0, 0.99)

DEFAULT_LR_RANGES: dict[str, tuple[float, float]] = {
    "sgd": (1e-3, 1.0),
    "adam": (1e-5, 0.1),
    "rmsprop": (1e-5, 0.1),
    "adamw": (1e-5, 0.1),
}
"""The lr range each optimizer searches unless ``--lr`` gives one for all: SGD with momentum
learns from about 1e-3 and diverges past about 1; the adaptive optimizers normalise the
step, so they learn two decades lower and rarely past 0.1 (what issue 22's grids measured on
the CIFAR subset: the best lr 0.06 for SGD, 0.002 to 0.003 for Adam)."""

# Where one momentum must be chosen: the grid (one value keeps Adam's points from repeating) and the LR range test.
DEFAULT_MOMENTUM = 0.9


def default_momentum(optimizer: str) -> float | None:
    """The momentum to use where it is not searched: :data:`DEFAULT_MOMENTUM` for SGD and RMSProp."""
    return DEFAULT_MOMENTUM if optimizer in MOMENTUM_OPTIMIZERS else None


MAX_LR = 1e6
"""The largest learning rate a search may reach. Nothing trains above it, and far above it
(float32 ends at 3.4e38) the optimizer's step overflows instead of diverging; scaled by a
batch-size ratio it stays far below that."""

SEED_LIMIT = 2**32
"""Seeds are below this: what numpy, and so Optuna's samplers and scikit-learn, accept."""


def offset_seed(seed: int, offset: int) -> int:
    """``seed + offset`` wrapped below :data:`SEED_LIMIT`, for the seeds a run derives from its
    own (a resumed study's sampler, each worker's), so that the largest seed still works."""
    return (seed + offset) % SEED_LIMIT


def parse_range(text: str, kind: type[Number]) -> tuple[Number, Number]:
    """Parse ``"MIN:MAX"`` into two positive numbers with MIN <= MAX.

    Raises:
        BatchlrUsageError: when the text is malformed or the range is empty.
    """
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = kind(parts[0]), kind(parts[1])
    except ValueError as error:
        example = "16:512" if kind is int else "1e-4:1"
        raise BatchlrUsageError(
            f"{text!r} is not MIN:MAX of {kind.__name__}s; write it like {example}"
        ) from error
    if not (low > 0 and high > 0) or math.isinf(high):
        raise BatchlrUsageError(f"{text!r}: both ends must be positive and finite")
    if low > high:
        raise BatchlrUsageError(f"{text!r}: MIN is greater than MAX; write {parts[1]}:{parts[0]}")
    return low, high


def parse_lr_range(text: str) -> tuple[float, float]:
    """:func:`parse_range` for learning rates, which must also stay at most :data:`MAX_LR`."""
    low, high = parse_range(text, float)
    if high > MAX_LR:
        raise BatchlrUsageError(
            f"{text!r}: a learning rate above {MAX_LR:g} only diverges (far above, float32 "
            f"overflows); give a MAX of at most {MAX_LR:g}"
        )
    return low, high


def parse_optimizers(text: str) -> tuple[str, ...]:
    """Parse comma-separated optimizer names, keeping their order and dropping repeats."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in OPTIMIZER_NAMES]
    if unknown or not names:
        raise BatchlrUsageError(
            f"unknown optimizer {', '.join(unknown) or '(none given)'}; choose from {','.join(OPTIMIZER_NAMES)}"
        )
    return names


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """The values one training run uses; built from a trial's params or an exported file.

    ``nesterov`` applies to SGD with momentum only (Nesterov's step needs momentum).
    """

    batch_size: int
    lr: float
    optimizer: OptimizerName
    momentum: float | None = None
    weight_decay: float = 0.0
    nesterov: bool = False

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], space: SearchSpace | None = None
    ) -> Hyperparameters:
        """Read the Optuna params of a trial of a study that searched ``space``.

        They hold ``batch_size``, ``optimizer``, ``momentum`` for SGD and RMSProp, ``lr``, or
        ``base_lr`` when the study scaled the learning rate with the batch size, and
        ``weight_decay`` when it searched one; the space gives what it fixed.

        Raises:
            BatchlrError: when a param is missing or out of its range (batch_size at least 1,
                the learning rate positive and finite, momentum in [0, 1), a known optimizer).
        """
        space = space or SearchSpace()
        scaling = space.lr_scaling
        lr_key = "lr" if scaling.rule == "none" else "base_lr"
        missing = [key for key in ("batch_size", lr_key, "optimizer") if key not in params]
        if missing:
            raise BatchlrError(f"params lack {', '.join(missing)}; was this made by batchlr?")
        optimizer, batch_size, base_lr, momentum = (
            params.get(key) for key in ("optimizer", "batch_size", lr_key, "momentum")
        )
        if optimizer not in OPTIMIZER_NAMES:
            raise BatchlrError(
                f"unknown optimizer {reprlib.repr(optimizer)}; batchlr knows {', '.join(OPTIMIZER_NAMES)}"
            )
        if not (is_whole_number(batch_size) and batch_size >= 1):
            raise BatchlrError(
                f"batch_size {reprlib.repr(batch_size)} is not a whole number of at least 1"
            )
        lr = _scaled_lr(scaling, base_lr, batch_size, optimizer)
        if not (math.isfinite(lr) and lr > 0):
            raise BatchlrError(
                f"{lr_key} {reprlib.repr(base_lr)} is not a positive learning rate (or overflows when scaled)"
            )
        if momentum is not None and not (is_real(momentum) and 0 <= momentum < 1):
            raise BatchlrError(f"momentum {reprlib.repr(momentum)} is not a number in [0, 1)")
        return cls(
            batch_size=batch_size,
            lr=float(lr),
            optimizer=optimizer,
            momentum=None if momentum is None else float(momentum),
            weight_decay=space.weight_decay.from_params(params),
            nesterov=space.nesterov,
        )


def _scaled_lr(scaling: LrScaling, base_lr: Any, batch_size: int, optimizer: str) -> float:
    """The learning rate for ``batch_size``: NaN when ``base_lr`` is no positive number, infinite
    when it overflows (a whole number too large for a float does not become infinite by itself)."""
    if not (is_real(base_lr) and base_lr > 0):
        return math.nan
    try:
        return float(scaling.lr(base_lr, batch_size, optimizer))
    except OverflowError:
        return math.inf


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Ranges a study searches. Batch size and learning rate are sampled on a log scale."""

    batch_size: tuple[int, int] = (16, 512)
    lr: tuple[float, float] | None = None
    """One lr range for every optimizer (``--lr MIN:MAX``, and what every study created
    before per-optimizer ranges holds); None: each optimizer searches its own, ``lr_ranges``."""
    optimizers: tuple[OptimizerName, ...] = DEFAULT_OPTIMIZERS
    lr_scaling: LrScaling = NO_LR_SCALING
    weight_decay: WeightDecay = NO_WEIGHT_DECAY
    nesterov: bool = False
    lr_ranges: dict[str, tuple[float, float]] | None = None
    """Each optimizer's lr range where ``lr`` is None: what ``--lr auto`` found, else
    :data:`DEFAULT_LR_RANGES`, filled in on construction for every optimizer searched, so that
    a study stores the ranges it was created with and resumes with them whatever a later
    release's defaults are. Ignored (and None) where ``lr`` is given."""

    def __post_init__(self) -> None:
        low, high = _pair(self.batch_size)
        require(
            is_whole_number(low) and is_whole_number(high) and 1 <= low <= high,
            "batch_size",
            self.batch_size,
            "give MIN:MAX of whole numbers with 1 <= MIN <= MAX",
        )
        optimizers = names_of("optimizers", self.optimizers, OPTIMIZER_NAMES)
        require(bool(optimizers), "optimizers", optimizers, "name at least one optimizer")
        require(isinstance(self.nesterov, bool), "nesterov", self.nesterov, "give true or false")
        if self.lr is not None:
            _check_lr_range("lr", self.lr)
            object.__setattr__(self, "lr_ranges", None)
            return
        ranges = self.lr_ranges if self.lr_ranges is not None else {}
        require(
            isinstance(ranges, Mapping) and all(name in OPTIMIZER_NAMES for name in ranges),
            "lr_ranges",
            ranges,
            f"give MIN:MAX per optimizer, of {', '.join(OPTIMIZER_NAMES)}",
        )
        for pair in ranges.values():
            _check_lr_range("lr_ranges", pair)
        filled = {name: DEFAULT_LR_RANGES[name] for name in optimizers} | {
            name: (float(pair[0]), float(pair[1])) for name, pair in ranges.items()
        }
        object.__setattr__(self, "lr_ranges", filled)

    def lr_range(self, optimizer: str) -> tuple[float, float]:
        """The range ``optimizer``'s trials draw lr (or base_lr) from."""
        if self.lr is not None:
            return self.lr
        assert self.lr_ranges is not None  # filled in on construction
        return self.lr_ranges.get(optimizer, DEFAULT_LR_RANGES[optimizer])

    @property
    def lr_hull(self) -> tuple[float, float]:
        """The smallest range holding every searched optimizer's: what a grid or the GP draws from."""
        ranges = [self.lr_range(name) for name in self.optimizers]
        return min(low for low, _ in ranges), max(high for _, high in ranges)

    @property
    def lr_param(self) -> str:
        """``lr``, or ``base_lr`` when a scaling rule turns it into the lr for each batch size."""
        return "lr" if self.lr_scaling.rule == "none" else "base_lr"

    def clip_batch_size(self, largest: int) -> SearchSpace:
        """Cap the batch range at ``largest``, the most samples a training fold holds.

        Raises:
            SettingError: for ``batch_size`` when even its MIN is larger.
        """
        low, high = self.batch_size
        require(
            low <= largest,
            "batch_size",
            self.batch_size,
            f"the smallest training fold holds only {largest} samples; use a MIN of at most {largest}",
        )
        return dataclasses.replace(self, batch_size=(low, min(high, largest)))

    def suggest(self, trial: optuna.Trial) -> Hyperparameters:
        """Draw one configuration; momentum only for the optimizers that use it.

        Raises:
            BatchlrError: for a space reaching beyond :data:`MAX_LR`, which a study created
                before that limit may hold: its trials would fail deep in the optimizer.
        """
        highest = self.lr_hull[1]
        if highest > MAX_LR:
            raise BatchlrError(
                f"this study searches {self.lr_param} up to {highest:.3g}, beyond batchlr's "
                "limit, where training only diverges or overflows; create a new study with --lr "
                f"at most {MAX_LR:g}"
            )
        optimizer = one_of(
            "optimizer",
            trial.suggest_categorical("optimizer", list(self.optimizers)),
            OPTIMIZER_NAMES,
        )
        lr_range = self.lr_range(optimizer)
        momentum = None
        if optimizer in MOMENTUM_OPTIMIZERS:
            momentum = trial.suggest_float("momentum", *MOMENTUM_RANGE)
        batch_size = trial.suggest_int("batch_size", *self.batch_size, log=True)
        return Hyperparameters(
            batch_size=batch_size,
            lr=self.lr_scaling.lr(
                trial.suggest_float(self.lr_param, *lr_range, log=True), batch_size, optimizer
            ),
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=self.weight_decay.suggest(trial),
            nesterov=self.nesterov,
        )

    def grid(self, points: Mapping[str, int] | None = None) -> dict[str, list[Any]]:
        """Finite values for GridSampler: for each of
        :data:`~batchlr.search.grid.GRID_PARAMS` in ``points``, that many log-spaced values
        from the low end to the high end of its range (whole and distinct for batch_size); for
        the others, powers of two (batch_size) and decades inside the ranges, plus the ends."""
        counts = points or {}

        def values(
            name: str, low: Number, high: Number, base: int, kind: type[Number]
        ) -> list[Number]:
            return (
                log_points(low, high, counts[name], kind)
                if name in counts
                else log_ladder(low, high, base=base, kind=kind)
            )

        grid: dict[str, list[Any]] = {
            "optimizer": list(self.optimizers),
            "momentum": [DEFAULT_MOMENTUM],
            "batch_size": values("batch_size", *self.batch_size, 2, int),
            self.lr_param: values("lr", *self.lr_hull, 10, float),
        }
        decay = self.weight_decay
        if decay.searched:
            grid["weight_decay"] = values("weight_decay", decay.low, decay.high, 10, float)
            if decay.try_none:
                grid[SWITCH_PARAM] = [True, False]
        return grid


def _check_lr_range(key: str, pair: Any) -> None:
    low, high = _pair(pair)
    require(
        is_finite_number(low) and is_finite_number(high) and 0 < low <= high,
        key,
        pair,
        "give MIN:MAX of finite numbers with 0 < MIN <= MAX",
    )


def _pair(value: Any) -> tuple[Any, Any]:
    """``value``'s two items, or two Nones when it is not a pair (which its rule then refuses)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None, None
