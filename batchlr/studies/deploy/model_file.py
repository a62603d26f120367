"""Model files that describe themselves: the weights of a refit model with everything needed to
use them elsewhere (the network, the input shape and class names, the resizing and the
normalisation it was trained with, its recipe, hyperparameters, scores and versions).

A file is what ``torch.save`` writes of a dict of tensors, strings, numbers, lists and dicts
only, so that ``torch.load(path, weights_only=True)`` reads it without running any code::

    {"batchlr_model": 1, "info": {...}, "state_dict": {...}}

A model trained on a data set without a test split records, as ``info["holdout"]``, the
names (:func:`image_names`) of the images held out from its training, and as
``info["data_fingerprint"]`` a digest of that data set's content
(:meth:`~batchlr.objectives.data.datasets.ImageData.content_fingerprint`), so that ``evaluate`` on that
same data set, even copied or moved, scores only those.
"""

from __future__ import annotations

import collections
import math
import reprlib
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from batchlr.errors import BatchlrError
from batchlr.files import check_regular_file, write_atomically
from batchlr.objectives.files import class_name_problem
from batchlr.objectives.settings import MAX_CLASSES, MAX_IMAGE_SIDE
from batchlr.objectives.training import MIN_STD

if TYPE_CHECKING:
    from batchlr.objectives.data import ImageData

MODEL_FORMAT = 1
"""Version of the file's layout; a file of a newer one is refused rather than misread."""

REQUIRED_INFO = ("model", "input_shape", "classes", "mean", "std")

MAX_INPUT_VALUES = 3 * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
"""The most values (channels × height × width) a model file's input shape may have: an RGB
image of the largest ``--image-size``. Its height and width are at most that side too. Loading
builds the model and runs two such images through it: a larger claim is refused first."""


class TrainedModel(nn.Module):
    """A trained network with its preprocessing: it takes images as batchlr stores them, uint8
    (or float 0 to 255) N×C×H×W of :attr:`input_shape`, normalises them as in training and
    returns one logit per class. :meth:`load_images` reads image files of any size into such a
    batch, resized as the model was trained. :attr:`info` holds everything else the file says."""

    scale: torch.Tensor  # buffers, registered in __init__
    shift: torch.Tensor

    def __init__(self, network: nn.Module, info: dict[str, Any]) -> None:
        super().__init__()
        self.network, self.info = network, info
        self.classes: tuple[str, ...] = tuple(info["classes"])
        self.input_shape: tuple[int, int, int] = tuple(info["input_shape"])
        self.register_buffer("scale", 1 / (255 * torch.tensor(info["std"]).view(1, -1, 1, 1)))
        self.register_buffer(
            "shift",
            -torch.tensor(info["mean"]).view(1, -1, 1, 1)
            / torch.tensor(info["std"]).view(1, -1, 1, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.network(torch.addcmul(self.shift, images.float(), self.scale))
        return logits

    def load_images(self, paths: list[Path]) -> torch.Tensor:
        """The images at ``paths`` as one uint8 batch of :attr:`input_shape`: colour or grey as
        the model takes them, scaled to cover its height and width, then centre-cropped."""
        from batchlr.objectives.files import decode_files

        channels, height, width = self.input_shape
        check_channels(channels, 1 if channels == 1 else 3, "image files are read with")
        return torch.from_numpy(
            decode_files([str(path) for path in paths], channels, (height, width))
        )


def check_channels(model_channels: int, image_channels: int, images: str) -> None:
    """Refuse images of ``image_channels`` channels for a model taking ``model_channels``, unless
    the counts are equal or are grey (1) and RGB (3), which convert into each other as training
    converts them (repeated grey, or luma). ``images`` completes "but ..." in the error, e.g.
    "mnist has". The one check of ``predict`` and ``evaluate`` alike.

    Raises:
        BatchlrError: for any other pair, a 2- or 4-channel model for grey or RGB images, say.
    """
    if image_channels != model_channels and {image_channels, model_channels} != {1, 3}:
        raise BatchlrError(
            f"the model takes {model_channels}-channel images but {images} {image_channels}; "
            "only grey (1 channel) and RGB (3) images convert into each other"
        )


def image_names(data: ImageData) -> tuple[str, ...]:
    """What a model file's ``holdout`` calls each image of ``data``: its path relative to the
    image folder, or for a built-in data set its index, as text."""
    return data.sources or tuple(str(index) for index in range(len(data.images)))


def model_info(
    *,
    model: str,
    input_shape: tuple[int, int, int],
    classes: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    **more: Any,
) -> dict[str, Any]:
    """The info a model file holds: the five things :func:`load_model` needs, then anything JSON-like."""
    return {
        "model": model,
        "input_shape": list(input_shape),
        "classes": list(classes),
        "mean": list(mean),
        "std": list(std),
        **more,
    }


def save_model(path: Path, network: nn.Module, info: dict[str, Any]) -> None:
    """Write ``network``'s weights with ``info`` to ``path``, replacing a previous file only once
    the new one is whole."""
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()
    }
    write_atomically(
        path,
        lambda temporary: torch.save(
            {"batchlr_model": MODEL_FORMAT, "info": info, "state_dict": state}, temporary
        ),
    )


def load_model(
    path: str | Path, device: str | torch.device = "cpu", trust_code: bool = False
) -> TrainedModel:
    """The model in the file ``path`` (written by ``batchlr refit``), on ``device``, in eval mode.

    The file is read with ``weights_only=True``: it runs no code. A file may name a user's
    model, ``package.module:function``, and building that imports and runs the module: only
    with ``trust_code``, since a file from elsewhere could name any module on the path.

    Raises:
        BatchlrError: when the file is missing or not a regular file (a FIFO would block), not
            a batchlr model file (a bare state dict of batchlr before 0.2 included: refit
            again), of a newer format, when its info is damaged or out of bounds (see
            :func:`_info_problem`), or its weights are not finite or do not fit the model it names.
    """
    from batchlr.objectives.models import build_model, resolve_model

    path = check_regular_file(Path(path), "model file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # what unpickling a damaged or foreign file raises varies
        raise BatchlrError(
            f"{path} is not a model file batchlr can read ({type(error).__name__}); write one with batchlr refit"
        ) from error
    if not isinstance(content, dict) or "batchlr_model" not in content:
        raise BatchlrError(
            f"{path} is not a batchlr model file (a bare state dict holds no model name, classes "
            "or normalisation); write one with batchlr refit"
        )
    version = content["batchlr_model"]
    if type(version) is not int or version < 1:  # a bool is an int to isinstance
        raise BatchlrError(
            f"{path} is not a batchlr model file (its format, batchlr_model, is "
            f"{reprlib.repr(version)}, not a number from 1); write one with batchlr refit"
        )
    if version > MODEL_FORMAT:
        raise BatchlrError(
            f"{path} was written by a newer batchlr (model format {version}); upgrade batchlr to read it"
        )
    info = content.get("info")
    problem = _info_problem(info)
    if problem:
        raise BatchlrError(
            f"{path}: its info is damaged ({problem}); write it again with batchlr refit"
        )
    assert isinstance(info, dict)  # _info_problem refuses anything else
    if ":" in info["model"] and not trust_code:
        raise BatchlrError(
            f"{path} names the model {info['model']}, a Python function: building it imports and runs that module; "
            "if you trust the file, pass trust_code=True (batchlr evaluate/predict --trust-model-code)"
        )
    state = content.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(tensor, torch.Tensor) for tensor in state.values()
    ):
        raise BatchlrError(
            f"{path}: its weights are damaged (state_dict is not a dict of tensors); write it again with batchlr refit"
        )
    diverged = next(
        (
            name
            for name, tensor in state.items()
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()
        ),
        None,
    )
    if diverged is not None:
        raise BatchlrError(
            f"{path}: its weights hold NaN or infinite values ({diverged}): the model is unusable; "
            "refit it, with a lower learning rate if its training diverged"
        )
    input_shape = tuple(info["input_shape"])
    network = build_model(
        resolve_model(info["model"]), info["model"], input_shape, len(info["classes"])
    )
    try:
        network.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as error:
        raise BatchlrError(
            f"{path}: its weights do not fit --model {info['model']} ({' '.join(str(error).split())[:200]})"
        ) from error
    return TrainedModel(network, info).to(device).eval()


def _info_problem(info: object) -> str | None:
    """What is wrong with a model file's ``info``, in a few words; None when it is usable.

    Bounds what loading will allocate (:data:`MAX_INPUT_VALUES`) and keeps the normalisation
    to what training writes (means of pixels scaled to 0..1, stds from :data:`MIN_STD` to 1),
    so that predictions never come out NaN from it.
    """
    if not isinstance(info, dict) or any(key not in info for key in REQUIRED_INFO):
        return f"it needs {', '.join(REQUIRED_INFO)}"
    shape, classes, mean, std = info["input_shape"], info["classes"], info["mean"], info["std"]
    if not isinstance(info["model"], str):
        return "model is not a name"
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(type(side) is int and side > 0 for side in shape)
    ):
        return "input_shape is not [channels, height, width] in whole numbers"
    if max(shape[1:]) > MAX_IMAGE_SIDE or math.prod(shape) > MAX_INPUT_VALUES:
        return (
            f"input_shape {shape} exceeds the largest batchlr trains on: sides up to "
            f"{MAX_IMAGE_SIDE}, {MAX_INPUT_VALUES:,} values"
        )
    if not (
        isinstance(classes, list)
        and 2 <= len(classes) <= MAX_CLASSES
        and all(isinstance(name, str) for name in classes)
    ):
        return f"classes is not a list of 2 to {MAX_CLASSES:,} names"
    for name in classes:  # as image folders judge their class folders' names
        if problem := class_name_problem(name):
            return f"class name {name!a} {problem}"
    # As image folders compare class names: two spellings of one name in Unicode are one.
    normal = collections.Counter(unicodedata.normalize("NFC", name) for name in classes)
    if twice := [name for name, count in normal.items() if count > 1]:
        return f"class {reprlib.repr(twice[0])} is named twice"
    if not all(
        isinstance(values, list)
        and len(values) == shape[0]
        and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
        for values in (mean, std)
    ):
        return f"mean and std are not {shape[0]} numbers each, one per channel"
    if not all(0 <= value <= 1 for value in mean) or not all(
        MIN_STD <= value <= 1 for value in std
    ):
        return (
            f"mean {reprlib.repr(mean)} or std {reprlib.repr(std)} is out of range: a mean of "
            f"pixels scaled to 0..1 is from 0 to 1, a std from {MIN_STD:g} to 1"
        )
    holdout = info.get("holdout")
    if holdout is not None and not (
        isinstance(holdout, list) and all(isinstance(name, str) for name in holdout)
    ):
        return "holdout is not a list of image names"
    return None
