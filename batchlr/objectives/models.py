"""CNNs by name, sized to the data set's input shape, and users' own model factories."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch
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

    Raises:
        BatchlrUsageError: naming ``--model`` when the module fails to import (whatever it
            raises: a syntax error, a missing package, its own exception) or lacks the function.
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
        raise BatchlrUsageError(f"--model {name}: cannot import {module_name} ({_one_line(error)})") from None
    except AttributeError:
        raise BatchlrUsageError(f"--model {name}: {module_name} has no attribute {function_name}") from None
    except (Exception, SystemExit) as error:  # the user's code runs at import: any error of its is theirs to fix
        raise BatchlrUsageError(f"--model {name}: importing {module_name} raised {type(error).__name__}: {_one_line(error)}") from None
    if not callable(factory):
        raise BatchlrUsageError(f"--model {name}: {function_name} is not callable")
    return factory


def build_model(factory: ModelFactory, name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Call ``factory`` and check what it gave: a module with trainable parameters that maps a
    batch of ``input_shape`` images to one score per class, ``(batch, num_classes)``.

    The check runs a batch of two zero images through the model in eval mode without
    gradients (so BatchNorm's statistics and the random state stay as they were), on the
    device of its parameters; lazy modules get their shapes from it, as they would from
    the first batch of training.

    Raises:
        BatchlrError: naming ``--model`` when the factory raises, or its model fails any check.
    """
    try:
        model = factory(input_shape, num_classes)
    except torch.OutOfMemoryError:
        raise  # a trial prunes it, as it does in training
    except Exception as error:
        raise BatchlrError(f"--model {name}: {_called(factory)}{(input_shape, num_classes)} raised {type(error).__name__}: {_one_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise BatchlrError(f"--model {name} returned {type(model).__name__}, not a torch.nn.Module")
    output = _forward(model, name, input_shape)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape != (2, num_classes):
        got = f"output of shape {shape}" if shape is not None else f"a {type(output).__name__}, not a tensor,"
        raise BatchlrError(
            f"--model {name}: a batch of 2 images of shape {input_shape} gives {got} where (2, {num_classes}) "
            "is needed: one score per class for each image"
        )
    if parameter_count(model) == 0:
        raise BatchlrError(f"--model {name} has no trainable parameters: the optimizer would have nothing to train")
    return model


def _forward(model: nn.Module, name: str, input_shape: tuple[int, int, int]) -> object:
    """``model``'s output for two zero images, in eval mode; the modules' modes are restored after."""
    modes = [module.training for module in model.modules()]
    first = next(model.parameters(), None)
    batch = torch.zeros((2, *input_shape), device=first.device if first is not None else "cpu")
    try:
        with torch.no_grad():
            output = model.eval()(batch)
    except torch.OutOfMemoryError:
        raise
    except Exception as error:
        raise BatchlrError(f"--model {name}: a batch of 2 images of shape {input_shape} fails in its forward pass: {type(error).__name__}: {_one_line(error)}") from None
    finally:
        for module, training in zip(model.modules(), modes):
            module.training = training  # each module's own flag, as it was
    return output


def _called(factory: ModelFactory) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__name__


def _one_line(error: BaseException) -> str:
    # The CLI prints an error as one line; torch's and the compiler's messages span several.
    return " ".join(str(error).split())


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters (of a model whose lazy modules, if any, have seen a batch)."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
