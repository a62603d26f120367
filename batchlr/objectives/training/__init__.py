"""The parts of a training step: batches, fold models, execution, optimizers; imports settings and search.space."""

from batchlr.objectives.training.batches import MIN_STD, Augmentation, DeviceImages, Normalisation
from batchlr.objectives.training.device import device_name, release_memory, resolve_device
from batchlr.objectives.training.execution import Execution, native_bf16, resolve_precision
from batchlr.objectives.training.fold_group import BatchStream, FoldGroup, RoundResult
from batchlr.objectives.training.fold_models import SeparateFolds
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
    "device_name",
    "make_loss",
    "make_optimizer",
    "native_bf16",
    "release_memory",
    "resolve_device",
    "resolve_precision",
]
