"""How every trial of a study trains, besides the hyperparameters it searches: the budget,
the schedule, warmup, the micro-batch cap, the objectives, augmentation, label smoothing and
precision;
and the image size a study resizes its images to.

Free of torch, so that commands that only read a study's settings start at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, get_args

from batchlr.errors import BatchlrUsageError
from batchlr.objectives.micro_batches import AUTO, MicroBatching
from batchlr.objectives.schedules import SCHEDULE_NAMES, Schedule
from batchlr.rules import is_finite_number, is_whole_number, names_of, one_of, require, whole
from batchlr.whole_numbers import whole_number

ROUNDS_PER_STEP_BUDGET = 10
BudgetKind = Literal["epochs", "steps"]
BUDGET_KINDS: tuple[BudgetKind, ...] = get_args(BudgetKind)
MAX_EPOCHS = 10_000
MAX_STEPS = MAX_EPOCHS * 10_000


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the last incomplete batch is dropped (see
    :class:`batchlr.objectives.training.fold_group.BatchStream`)."""
    return train_size // batch_size


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long each fold trains: ``amount`` epochs (at most :data:`MAX_EPOCHS`), or ``amount``
    optimizer steps (at most :data:`MAX_STEPS`).

    Raises:
        SettingError: for another kind (key ``budget``) or amount (key ``epochs`` or ``steps``).
    """

    kind: BudgetKind = "epochs"
    amount: int = 10

    def __post_init__(self) -> None:
        kind = one_of("budget", self.kind, BUDGET_KINDS)
        whole(kind, self.amount, 1, MAX_EPOCHS if kind == "epochs" else MAX_STEPS)

    def to_attrs(self) -> dict[str, Any]:
        """The budget as the options that set it: ``budget``, and ``epochs`` or ``steps``."""
        return {
            "budget": self.kind,
            "epochs": self.amount if self.kind == "epochs" else None,
            "steps": self.amount if self.kind == "steps" else None,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Budget:
        """From stored attrs or options: ``steps`` without ``budget`` implies a step budget.

        Raises:
            SettingError: for a step budget without steps, or steps with an epoch budget.
        """
        steps, epochs = attrs.get("steps"), attrs.get("epochs")
        implied = "steps" if steps is not None else "epochs"
        kind = one_of("budget", attrs.get("budget") or implied, BUDGET_KINDS)
        require(
            kind != "steps" or steps is not None,
            "budget",
            kind,
            "needs a step count (steps), the optimizer steps each fold trains",
        )
        require(
            kind != "epochs" or steps is None,
            "steps",
            steps,
            "go with budget steps; drop them or set budget to steps",
        )
        amount: Any = steps if kind == "steps" else cls.amount if epochs is None else epochs
        return cls(kind, amount)

    @property
    def round_count(self) -> int:
        """Reports per trial: one per epoch, or ten (fewer for under ten steps) under a step budget."""
        if self.kind == "epochs":
            return self.amount
        return min(self.amount, ROUNDS_PER_STEP_BUDGET)

    def rounds(self, train_size: int, batch_size: int) -> list[int]:
        """Optimizer steps in each round between two reports; under a step budget the rounds
        differ by at most one step, so that every trial reports at the same step counts."""
        if self.kind == "epochs":
            return [steps_per_epoch(train_size, batch_size)] * self.amount
        whole, extra = divmod(self.amount, self.round_count)
        return [whole + (index < extra) for index in range(self.round_count)]


Objective = Literal["accuracy", "time"]
OBJECTIVES: tuple[tuple[Objective, ...], ...] = (("accuracy",), ("accuracy", "time"))

Augment = Literal["flip", "crop"]
AUGMENTATIONS: tuple[Augment, ...] = get_args(Augment)
"""Random horizontal flips, and random crops of the image after reflection padding."""

MAX_IMAGE_SIDE = 4096
"""The largest height or width batchlr trains on: of ``--image-size``, and of an image folder's
images loaded at their own size. A model file's input shape is refused beyond it
(:mod:`batchlr.studies.deploy.model_file`), so training never writes a model that cannot be loaded."""

MAX_CLASSES = 100_000
"""The most classes batchlr trains on (ImageNet-21k has 21,841): of an image folder's class
folders, and of a model file's class names, which loading builds one output each for before it
reads a weight."""

FuseChoice = Literal["auto", "on", "off"]
FUSE_CHOICES: tuple[FuseChoice, ...] = get_args(FuseChoice)
"""``--fuse-folds``: ``auto`` fuses on CUDA only. On the CPU fused folds measured 2.7x (fp32) to
3.7x (bf16) slower than separate ones (vmap turns the folds into grouped convolutions, which the CPU runs worse
than k plain ones), while on a GPU a small CNN is bound by kernel launches, which fusion
divides by k. Not a study setting: fused and separate folds train the same models."""

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
"""``--precision``: the dtype of the forward pass and the loss (parameters and optimizer state
stay float32). ``auto`` is bf16 where the device computes it natively, else fp32."""


def parse_augment(text: str) -> tuple[str, ...]:
    """``none``, or comma-separated names, :data:`AUGMENTATIONS` in their canonical order
    first; any other name is the setting's to refuse (``TrainingSettings``).

    Raises:
        BatchlrUsageError: for text that names nothing.
    """
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    if not names:
        raise BatchlrUsageError(f"--augment {text!r}: choose none, flip, crop or flip,crop")
    if names == {"none"}:
        return ()
    known = tuple(name for name in AUGMENTATIONS if name in names)
    return known + tuple(sorted(names - set(AUGMENTATIONS)))


def parse_image_size(text: str) -> tuple[int, int]:
    """``N`` (square) or ``HxW`` as (height, width).

    Raises:
        BatchlrUsageError: for malformed text; the sides are the setting's to judge
            (``StudySpec``'s ``image_size``).
    """
    sides = list(map(whole_number, text.lower().split("x")))
    height, width = sides[0], sides[-1]
    if len(sides) not in (1, 2) or height is None or width is None:
        raise BatchlrUsageError(f"--image-size {text!r}: give N or HxW in pixels, like 32 or 48x64")
    return height, width


def default_crop_padding(input_shape: tuple[int, int, int]) -> int:
    """An eighth of the shorter side, at least 1: 4 for 32x32 images, as in the ResNet paper's CIFAR-10 recipe."""
    return max(1, round(min(input_shape[1:]) / 8))


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How every trial of a study trains, besides the hyperparameters it searches.

    ``warmup`` is in epochs. ``max_micro_batch`` caps the samples in one forward/backward
    pass (``None``: no cap; ``"auto"`` until the study resolves it by probing the device).
    ``objectives`` is ``("accuracy",)``, or ``("accuracy", "time")`` to also minimise the
    training seconds; a two-objective trial reports nothing per round, since Optuna cannot
    prune multi-objective trials. ``augment`` names the :data:`AUGMENTATIONS` applied to
    training batches; ``crop_padding`` is the crop's reflection padding in pixels (``None``:
    :func:`default_crop_padding`). ``label_smoothing`` is the training loss's. ``precision``
    is one of :data:`PRECISIONS`, resolved per device by each process that trains, so that a
    study's workers on different machines each use what theirs does best.

    Raises:
        SettingError: naming the first setting outside its rule.
    """

    budget: Budget = Budget()
    schedule: Schedule = "constant"
    warmup: float = 0.0
    max_micro_batch: int | str | None = None
    objectives: tuple[Objective, ...] = ("accuracy",)
    augment: tuple[Augment, ...] = ()
    crop_padding: int | None = None
    label_smoothing: float = 0.0
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        one_of("schedule", self.schedule, SCHEDULE_NAMES)
        warmup = self.warmup
        require(
            is_finite_number(warmup) and warmup >= 0,
            "warmup",
            warmup,
            "give a number of epochs, 0 or more",
        )
        require(
            not (warmup and self.schedule == "onecycle"),
            "warmup",
            warmup,
            "one-cycle warms up by itself (its first 30 % of steps); drop the warmup",
        )
        require(
            not (self.budget.kind == "epochs" and warmup >= self.budget.amount),
            "warmup",
            warmup,
            f"is not shorter than the {self.budget.amount} epochs: the lr would never reach its "
            "value; warm up for fewer epochs",
        )
        cap = self.max_micro_batch
        require(
            cap is None or cap == AUTO or (is_whole_number(cap) and cap >= 1),
            "max_micro_batch",
            cap,
            f"give a whole number of at least 1, or {AUTO}",
        )
        require(
            isinstance(self.objectives, (list, tuple)) and tuple(self.objectives) in OBJECTIVES,
            "objectives",
            self.objectives,
            "use accuracy, or accuracy,time",
        )
        augment = names_of("augment", self.augment, AUGMENTATIONS)
        if self.crop_padding is not None:
            whole("crop_padding", self.crop_padding, 1)
            require(
                "crop" in augment,
                "crop_padding",
                self.crop_padding,
                "goes with augment crop (or flip,crop)",
            )
        smoothing = self.label_smoothing
        require(
            is_finite_number(smoothing) and 0 <= smoothing < 1,
            "label_smoothing",
            smoothing,
            "give a number from 0 up to 1, like 0.1",
        )
        one_of("precision", self.precision, PRECISIONS)

    def crop_padding_for(self, input_shape: tuple[int, int, int]) -> int:
        """The crop's reflection padding for images of ``input_shape``; 0 without crops.

        Raises:
            SettingError: when the padding is not smaller than the images, which reflection needs.
        """
        if "crop" not in self.augment:
            return 0
        padding = (
            default_crop_padding(input_shape) if self.crop_padding is None else self.crop_padding
        )
        require(
            padding < min(input_shape[1:]),
            "crop_padding",
            padding,
            f"reflection padding must be smaller than the {input_shape[1]}x{input_shape[2]} images",
        )
        return padding

    @property
    def micro_batching(self) -> MicroBatching:
        """How batches split under the cap, which must be resolved (no longer ``"auto"``) by now."""
        if isinstance(self.max_micro_batch, str):
            raise ValueError(f"micro-batch cap {self.max_micro_batch!r} is not resolved yet")
        return MicroBatching(self.max_micro_batch)

    def warmup_steps(self, train_size: int, batch_size: int) -> int:
        """Optimizer steps of warmup for a fold of ``train_size`` samples."""
        return round(self.warmup * steps_per_epoch(train_size, batch_size))
