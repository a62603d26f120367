"""One training step and what runs it; imports settings, micro_batches, search.space, never data (models: types)."""

from batchlr.objectives.training.batches import MIN_STD, Augmentation, DeviceImages, Normalisation
from batchlr.objectives.training.device import release_memory, resolve_device
from batchlr.objectives.training.execution import Execution, native_bf16, resolve_precision
from batchlr.objectives.training.fold_models import SeparateFolds, check_fusable
from batchlr.objectives.training.loop import (
    BatchStream,
    FoldGroup,
    RoundResult,
    evaluate,
    train_in_lockstep,
    train_steps,
)
from batchlr.objectives.training.micro_batch_fit import (
    largest_micro_batch,
    largest_passing,
    resolve_cap,
)
from batchlr.objectives.training.optimizers import make_loss, make_optimizer

__all__ = [
    "MIN_STD",
    "Augmentation",
    "BatchStream",
    "DeviceImages",
    "Execution",
    "FoldGroup",
    "Normalisation",
    "RoundResult",
    "SeparateFolds",
    "check_fusable",
    "evaluate",
    "largest_micro_batch",
    "largest_passing",
    "make_loss",
    "make_optimizer",
    "native_bf16",
    "release_memory",
    "resolve_cap",
    "resolve_device",
    "resolve_precision",
    "train_in_lockstep",
    "train_steps",
]
