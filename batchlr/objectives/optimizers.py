"""Torch optimizers for the names a study searches; shared by the objective and exported configs."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from batchlr.search.space import Hyperparameters

_OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
}


def make_optimizer(hyperparameters: Hyperparameters, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer ``hyperparameters.optimizer`` over ``parameters`` with its lr and momentum."""
    options: dict[str, float] = {"lr": hyperparameters.lr}
    if hyperparameters.momentum is not None:
        options["momentum"] = hyperparameters.momentum
    return _OPTIMIZER_CLASSES[hyperparameters.optimizer](parameters, **options)
