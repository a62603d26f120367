"""The k models of a trial's folds, trained as one: separately, or fused into one model whose
parameters are stacked along a leading fold dimension (``torch.func``, as HFTA fuses
hyperparameter trials).

Either way one optimizer updates the parameters of every fold. SGD, Adam, RMSProp and AdamW
update each element from its own gradient and state alone, so one optimizer over k models'
parameters keeps per-fold state exactly as k optimizers would, and a fold's NaN stays in its
fold. Fused folds keep per-fold BatchNorm statistics: the buffers are stacked too.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from batchlr.objectives.training.execution import Execution


class FoldModels(abc.ABC):
    """k models: their parameters, train and eval modes, and their logits on k batches at once."""

    count: int

    @abc.abstractmethod
    def parameters(self) -> list[torch.Tensor]:
        """The trainable parameters of every fold, for one optimizer."""

    @abc.abstractmethod
    def train(self, mode: bool = True) -> None:
        """Training mode (BatchNorm on batch statistics, dropout on), or eval mode."""

    @property
    @abc.abstractmethod
    def passes(self) -> list[slice]:
        """The groups of folds that run one forward and backward pass together."""

    @abc.abstractmethod
    def logits(self, inputs: torch.Tensor, folds: slice = slice(None)) -> torch.Tensor:
        """(f, b, classes) for ``inputs`` of (f, b, C, H, W), one of :attr:`passes`: the
        models of ``folds`` on their batches."""

    @abc.abstractmethod
    def module(self, fold: int) -> nn.Module:
        """Fold ``fold``'s model as a plain module, e.g. to save its state dict."""


class SeparateFolds(FoldModels):
    """One module per fold, run one after another, in ``memory_format``."""

    def __init__(
        self,
        models: list[nn.Module],
        compile: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        self.models, self.count, self.memory_format = models, len(models), memory_format
        for model in models:
            model.to(memory_format=memory_format)
            if compile:
                model.compile()  # in place: the state dict keeps its keys

    def parameters(self) -> list[torch.Tensor]:
        return [
            parameter
            for model in self.models
            for parameter in model.parameters()
            if parameter.requires_grad
        ]

    def train(self, mode: bool = True) -> None:
        for model in self.models:
            model.train(mode)

    @property
    def passes(self) -> list[slice]:
        """Each fold alone: one fold's activations in memory at a time, as one model needs."""
        return [slice(fold, fold + 1) for fold in range(self.count)]

    def logits(self, inputs: torch.Tensor, folds: slice = slice(None)) -> torch.Tensor:
        return torch.stack(
            [
                model(batch.contiguous(memory_format=self.memory_format))
                for model, batch in zip(self.models[folds], inputs, strict=True)
            ]
        )

    def module(self, fold: int) -> nn.Module:
        return self.models[fold]


class FusedFolds(FoldModels):
    """The folds' parameters and buffers stacked, and one vmapped forward pass for all folds:
    a layer's k small kernels become one k-times larger kernel."""

    def __init__(self, models: list[nn.Module], compile: bool = False) -> None:
        self.count = len(models)
        # Not torch.func.stack_module_state, which refuses the models of a factory that defines
        # its class inside the function (a new class every call).
        parameters = [dict(model.named_parameters()) for model in models]
        buffers = [dict(model.named_buffers()) for model in models]
        self.params = {
            name: torch.stack([fold[name].detach() for fold in parameters]).requires_grad_(
                tensor.requires_grad
            )
            for name, tensor in parameters[0].items()
        }
        self.buffers = {name: torch.stack([fold[name] for fold in buffers]) for name in buffers[0]}
        # The module the stacked tensors run through, and copy for module(). Not moved to the
        # meta device, which would untie tied weights.
        skeleton = copy.deepcopy(models[0])

        def forward(
            params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], batch: torch.Tensor
        ) -> torch.Tensor:
            logits: torch.Tensor = functional_call(skeleton, (params, buffers), (batch,))
            return logits

        self.skeleton = skeleton
        # Dropout draws differently in each fold, as in separate models.
        fused: Callable[..., torch.Tensor] = vmap(forward, randomness="different")
        self.forward = torch.compile(fused) if compile else fused

    def parameters(self) -> list[torch.Tensor]:
        return [parameter for parameter in self.params.values() if parameter.requires_grad]

    def train(self, mode: bool = True) -> None:
        self.skeleton.train(mode)

    @property
    def passes(self) -> list[slice]:
        """All folds at once: k times one model's activations."""
        return [slice(None)]

    def logits(self, inputs: torch.Tensor, folds: slice = slice(None)) -> torch.Tensor:
        return self.forward(self.params, self.buffers, inputs)

    def module(self, fold: int) -> nn.Module:
        """Fold ``fold``'s model. Its tensors are set one by one rather than through a state
        dict, which would miss tied weights (named twice) and non-persistent buffers."""
        model = copy.deepcopy(self.skeleton)
        with torch.no_grad():
            for name, tensor in model.named_parameters():
                tensor.copy_(self.params[name][fold])
            for name, buffer in model.named_buffers():
                buffer.copy_(self.buffers[name][fold])
        return model


def fold_models(models: list[nn.Module], execution: Execution) -> FoldModels:
    """``models`` as ``execution`` trains them: :class:`FusedFolds` or :class:`SeparateFolds`."""
    if execution.fuse_folds:
        return FusedFolds(models, execution.compile)
    return SeparateFolds(models, execution.compile, execution.memory_format)
