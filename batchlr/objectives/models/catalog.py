"""CNNs by name, sized to the data set's input shape, and users' own model factories.

``--model`` names one of three kinds of model:

- a built-in network (:data:`MODEL_NAMES`), sized to the input;
- a torchvision classification model (any name of
  ``torchvision.models.list_models(module=torchvision.models)``), built untrained;
- ``package.module:function``, the user's own factory.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import sys
from collections.abc import Callable, Iterator

import torch
from torch import nn

from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.models.resnet import resnet20

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]

MODEL_NAMES: tuple[str, ...] = ("convnet", "convnet-bn", "resnet20")
WIDTHS = (32, 64, 128)

SMALL_IMAGE_MODELS: tuple[str, ...] = (
    "resnet18",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
)
"""A few torchvision models that take images of any size, 8×8 digits included: those an
error suggests when a model refuses the images' size."""

MINIMUM_IMAGE_SIZES: dict[str, int] = {
    "alexnet": 63,
    "googlenet": 15,
    "inception_v3": 75,
    "squeezenet1_0": 21,
    "squeezenet1_1": 17,
    **dict.fromkeys(("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"), 32),
    **dict.fromkeys(("densenet121", "densenet161", "densenet169", "densenet201"), 29),
    **dict.fromkeys(("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"), 4),
    **dict.fromkeys(
        ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"), 32
    ),
}
"""The smallest height and width the torchvision models that have one accept (measured
with torchvision 0.29); the others take images of any size."""

EXACT_IMAGE_SIZES: dict[str, int] = dict.fromkeys(
    ("maxvit_t", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32"), 224
)
"""The one height and width the torchvision models built for a fixed size accept."""


def convnet(
    input_shape: tuple[int, int, int], num_classes: int, *, batch_norm: bool = False
) -> nn.Module:
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
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
    )


def torchvision_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """torchvision's classification model ``name``, untrained, for ``input_shape`` images.

    Its weights are freshly initialised (``weights=None``: nothing is downloaded) and its
    head has ``num_classes`` outputs. googlenet and inception_v3 are built without their
    auxiliary heads, which would make training's output a tuple.

    Which fit small images (measured with torchvision 0.29; the limits are
    :data:`MINIMUM_IMAGE_SIZES` and :data:`EXACT_IMAGE_SIZES`):

    - 28×28 and 32×32, and 8×8 too: the efficientnet, mnasnet, mobilenet, regnet, resnet,
      resnext, wide_resnet, shufflenet_v2 and swin models (:data:`SMALL_IMAGE_MODELS`);
    - 28×28 and 32×32: googlenet (15×15 and up), squeezenet1_0 (21) and squeezenet1_1 (17);
    - 32×32 but not 28×28: convnext (32×32 and up), densenet (29) and vgg (32);
    - neither: alexnet (63×63 and up), inception_v3 (75), and maxvit_t and the vit models
      (exactly 224×224).

    Their ImageNet stems and stages downsample 32 times, so most shrink a 32×32 image to
    1×1 by their last stage: they run, but ``resnet20`` is built for such images.

    A one-channel input_shape gets a model that repeats the grey channel to three
    (:class:`GreyToRGB`), since torchvision's first convolutions take RGB.

    Raises:
        BatchlrError: when the images are smaller than the model accepts, or not the one
            size it accepts, saying which ``--image-size`` to give; checked before building,
            which takes seconds for the largest models.
    """
    import torchvision  # here, not at the top: importing it takes a second that `batchlr --help` should not

    channels, height, width = input_shape
    instead = f"or choose a model for small images: {', '.join(('resnet20', *SMALL_IMAGE_MODELS))}"
    if name in EXACT_IMAGE_SIZES and (height, width) != (EXACT_IMAGE_SIZES[name],) * 2:
        size = EXACT_IMAGE_SIZES[name]
        raise BatchlrError(
            f"--model {name} needs {size}x{size} images, not {height}x{width}; give --image-size {size} {instead}"
        )
    if min(height, width) < MINIMUM_IMAGE_SIZES.get(name, 0):
        size = MINIMUM_IMAGE_SIZES[name]
        raise BatchlrError(
            f"--model {name} needs at least {size}x{size} images, not {height}x{width}; give "
            f"--image-size {size} {instead}"
        )
    # Without init_weights googlenet and inception_v3 warn that their default init will change.
    options = (
        {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    )
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    return GreyToRGB(model) if channels == 1 else model


class GreyToRGB(nn.Module):
    """``model`` for grey images: repeats their one channel to the three it takes.

    torchvision's stems expect RGB. Repeating the channel keeps the model torchvision's
    own, where a one-channel first convolution would differ from family to family. Its
    state dict is the model's with keys prefixed ``model.``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # expand makes a view: no copy of the batch
        logits: torch.Tensor = self.model(images.expand(-1, 3, -1, -1))
        return logits


def resolve_model(name: str) -> ModelFactory:
    """The factory for a built-in name, a torchvision classification model's name or
    ``package.module:function``.

    A user's function is called as ``function(input_shape, num_classes)`` with
    ``input_shape = (channels, height, width)`` and must return an ``nn.Module``.

    Raises:
        BatchlrUsageError: for a name of none of these kinds, and naming ``--model`` when the
            module fails to import (whatever it raises: a syntax error, a missing package,
            its own exception) or lacks the function.
    """
    if name == "convnet":
        return convnet
    if name == "convnet-bn":
        return lambda shape, classes: convnet(shape, classes, batch_norm=True)
    if name == "resnet20":
        return resnet20
    module_name, colon, function_name = name.partition(":")
    if not colon:
        import torchvision

        if name not in torchvision.models.list_models(module=torchvision.models):
            raise BatchlrUsageError(
                f"--model: unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}, any "
                "torchvision classification model (such as resnet18 or mobilenet_v3_small), or "
                "give package.module:function"
            )
        return lambda shape, classes: torchvision_model(name, shape, classes)
    if not module_name or not function_name:
        raise BatchlrUsageError(
            f"--model {name!r}: give package.module:function, with both a module and a function"
        )
    directory = os.getcwd()
    try:
        with _first_on_path(directory):
            factory = getattr(importlib.import_module(module_name), function_name)
    except ImportError as error:
        raise BatchlrUsageError(
            f"--model {name}: cannot import {module_name} ({_one_line(error)})"
        ) from error
    except AttributeError as error:
        raise BatchlrUsageError(
            f"--model {name}: {module_name} has no attribute {function_name}"
        ) from error
    # the user's code runs at import: any error of its is theirs to fix
    except (Exception, SystemExit) as error:
        raise BatchlrUsageError(
            f"--model {name}: importing {module_name} raised {type(error).__name__}: {_one_line(error)}"
        ) from error
    if not callable(factory):
        raise BatchlrUsageError(f"--model {name}: {function_name} is not callable")
    return _exits_as_errors(factory, name, directory)


@contextlib.contextmanager
def _first_on_path(directory: str) -> Iterator[None]:
    """``directory`` (the working directory a ``--model`` was named in) first on ``sys.path``
    while the user's code runs, as under ``python -m``, so that a module beside the user imports
    without PYTHONPATH, and off it again after.

    Only then: on the path for the rest of a command, a file there named as a module that is
    imported later (``torch.py``, ``yaml.py``, or an optional one that is not installed) would
    be imported in place of the real one.
    """
    if directory in sys.path:
        yield  # put there by the user (PYTHONPATH) or by Python: theirs to keep
        return
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        sys.path.remove(directory)


def _exits_as_errors(factory: ModelFactory, name: str, directory: str) -> ModelFactory:
    """``factory``, a user's function, with a ``SystemExit`` it raises made an error naming it:
    every caller (the model check, training, the memory probe) goes through this wrapper, and
    an exit would otherwise end batchlr silently, with the function's exit status. A
    KeyboardInterrupt stays one: it is the user's. ``directory`` is on the path while it runs
    (see :func:`_first_on_path`)."""

    @functools.wraps(factory)
    def call(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        try:
            with _first_on_path(directory):  # a function that imports beside it when called
                return factory(input_shape, num_classes)
        except SystemExit as error:
            raise BatchlrError(
                f"--model {name}: {_called(factory)}{(input_shape, num_classes)} called exit({_one_line(error)}); "
                "a model function must return a torch.nn.Module"
            ) from error

    return call


def build_model(
    factory: ModelFactory, name: str, input_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """Call ``factory`` and check what it gave: a module with trainable parameters that maps a
    batch of ``input_shape`` images to one score per class, ``(batch, num_classes)``.

    The check runs a batch of two zero images through the model in eval mode without
    gradients (so BatchNorm's statistics and the random state stay as they were), on the
    device of its parameters; lazy modules get their shapes from it, as they would from
    the first batch of training.

    Raises:
        BatchlrError: naming ``--model`` when the factory raises (its own BatchlrError as it
            is: that already says what to change), or its model fails any check.
    """
    try:
        model = factory(input_shape, num_classes)
    except (torch.OutOfMemoryError, BatchlrError):
        raise  # a trial prunes an OutOfMemoryError, as it does in training
    except Exception as error:
        raise BatchlrError(
            f"--model {name}: {_called(factory)}{(input_shape, num_classes)} raised "
            f"{type(error).__name__}: {_one_line(error)}"
        ) from error
    if not isinstance(model, nn.Module):
        raise BatchlrError(f"--model {name} returned {type(model).__name__}, not a torch.nn.Module")
    output = _forward(model, name, input_shape)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    if shape != (2, num_classes):
        got = (
            f"output of shape {shape}"
            if shape is not None
            else f"a {type(output).__name__}, not a tensor,"
        )
        raise BatchlrError(
            f"--model {name}: a batch of 2 images of shape {input_shape} gives {got} where (2, {num_classes}) "
            "is needed: one score per class for each image"
        )
    if parameter_count(model) == 0:
        raise BatchlrError(
            f"--model {name} has no trainable parameters: the optimizer would have nothing to train"
        )
    return model


def _forward(model: nn.Module, name: str, input_shape: tuple[int, int, int]) -> object:
    """``model``'s output for two zero images, in eval mode; the modules' modes are restored after."""
    modes = [(module, module.training) for module in model.modules()]
    first = next(model.parameters(), None)
    batch = torch.zeros((2, *input_shape), device=first.device if first is not None else "cpu")
    try:
        with torch.no_grad():
            output = model.eval()(batch)
    except torch.OutOfMemoryError:
        raise
    # a user's forward is theirs to fix, an exit() in it included
    except (Exception, SystemExit) as error:
        raise BatchlrError(
            f"--model {name}: a batch of 2 images of shape {input_shape} fails in its forward "
            f"pass: {type(error).__name__}: {_one_line(error)}"
        ) from error
    finally:
        for module, training in modes:
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


def named_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A fresh model of ``--model name`` for images of ``input_shape`` and ``num_classes``, as
    batchlr's trials build it: ``batchlr.build_model(cfg.settings.model, cfg.data.input_shape,
    cfg.data.classes)`` in a script that trains an exported configuration.

    Raises:
        BatchlrError: for an unknown name, or a model that fails batchlr's checks.
    """
    return build_model(resolve_model(name), name, input_shape, num_classes)
