"""Torch optimizers and the loss for the names a study searches; shared by the objective and exported configs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from batchlr.search.space import Hyperparameters

_OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "adamw": torch.optim.AdamW,
}


def make_optimizer(
    hyperparameters: Hyperparameters, parameters: Iterable[torch.Tensor]
) -> torch.optim.Optimizer:
    """The optimizer ``hyperparameters.optimizer`` over ``parameters`` with its lr, momentum and
    weight decay (coupled L2 for SGD, Adam and RMSProp, decoupled for AdamW, as torch defines
    them), and Nesterov momentum for SGD where asked and momentum is not 0."""
    options: dict[str, Any] = {
        "lr": hyperparameters.lr,
        "weight_decay": hyperparameters.weight_decay,
    }
    if hyperparameters.momentum is not None:
        options["momentum"] = hyperparameters.momentum
    if hyperparameters.optimizer == "sgd" and hyperparameters.nesterov and hyperparameters.momentum:
        options["nesterov"] = True
    return _OPTIMIZER_CLASSES[hyperparameters.optimizer](parameters, **options)


def make_loss(label_smoothing: float = 0.0) -> nn.CrossEntropyLoss:
    """The training loss: cross-entropy with ``label_smoothing`` (Szegedy et al. 2016)."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
