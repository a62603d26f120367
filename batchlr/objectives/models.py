"""CNNs by name, sized to the data set's input shape, and users' own model factories."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

from torch import nn

from batchlr.errors import BatchlrError, BatchlrUsageError

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]

MODEL_NAMES: tuple[str, ...] = ("convnet", "convnet-bn")
WIDTHS = (32, 64, 128)


def convnet(input_shape: tuple[int, int, int], num_classes: int, *, batch_norm: bool = False) -> nn.Module:
    """Three 3×3 conv blocks (32, 64, 128 channels), global average pooling and a linear head.

    The first blocks halve the resolution with max pooling: twice for 8×8 inputs, three
    times for 28×28 and 32×32, so the last block always sees a 2×2 to 4×4 map.
    """
    channels, height, width = input_shape
    halvings = max(0, min(len(WIDTHS), math.floor(math.log2(min(height, width) / 2))))
    layers: list[nn.Module] = []
    for block, out_channels in enumerate(WIDTHS):
        # A conv followed by BatchNorm needs no bias: BatchNorm's shift replaces it.
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        if block < halvings:
            layers.append(nn.MaxPool2d(2))
        channels = out_channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def resolve_model(name: str) -> ModelFactory:
    """The factory for a built-in name or for ``package.module:function``.

    A user's function is called as ``function(input_shape, num_classes)`` with
    ``input_shape = (channels, height, width)`` and must return an ``nn.Module``.
    """
    if name == "convnet":
        return convnet
    if name == "convnet-bn":
        return lambda shape, classes: convnet(shape, classes, batch_norm=True)
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name:
        raise BatchlrUsageError(f"--model: unknown model {name!r}; choose from {', '.join(MODEL_NAMES)} or give package.module:function")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except ImportError as error:
        raise BatchlrUsageError(f"--model {name}: cannot import {module_name} ({error})") from None
    except AttributeError:
        raise BatchlrUsageError(f"--model {name}: {module_name} has no attribute {function_name}") from None
    if not callable(factory):
        raise BatchlrUsageError(f"--model {name}: {function_name} is not callable")
    return factory


def build_model(factory: ModelFactory, name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Call ``factory`` and check that it gave a module."""
    model = factory(input_shape, num_classes)
    if not isinstance(model, nn.Module):
        raise BatchlrError(f"--model {name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
