"""Model files that describe themselves: the weights of a refit model with everything needed to
use them elsewhere (the network, the input shape and class names, the resizing and the
normalisation it was trained with, its recipe, hyperparameters, scores and versions).

A file is what ``torch.save`` writes of a dict of tensors, strings, numbers, lists and dicts
only, so that ``torch.load(path, weights_only=True)`` reads it without running any code::

    {"batchlr_model": 1, "info": {...}, "state_dict": {...}}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from batchlr.errors import BatchlrError
from batchlr.files import write_atomically

MODEL_FORMAT = 1
"""Version of the file's layout; a file of a newer one is refused rather than misread."""

REQUIRED_INFO = ("model", "input_shape", "classes", "mean", "std")


class TrainedModel(nn.Module):
    """A trained network with its preprocessing: it takes images as batchlr stores them, uint8
    (or float 0 to 255) N×C×H×W of :attr:`input_shape`, normalises them as in training and
    returns one logit per class. :meth:`load_images` reads image files of any size into such a
    batch, resized as the model was trained. :attr:`info` holds everything else the file says."""

    def __init__(self, network: nn.Module, info: dict[str, Any]) -> None:
        super().__init__()
        self.network, self.info = network, info
        self.classes: tuple[str, ...] = tuple(info["classes"])
        self.input_shape: tuple[int, int, int] = tuple(info["input_shape"])
        self.register_buffer("scale", 1 / (255 * torch.tensor(info["std"]).view(1, -1, 1, 1)))
        self.register_buffer("shift", -torch.tensor(info["mean"]).view(1, -1, 1, 1) / torch.tensor(info["std"]).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(torch.addcmul(self.shift, images.float(), self.scale))

    def load_images(self, paths: list[Path]) -> torch.Tensor:
        """The images at ``paths`` as one uint8 batch of :attr:`input_shape`: colour or grey as
        the model takes them, scaled to cover its height and width, then centre-cropped."""
        from batchlr.objectives.readers import decode_files

        channels, height, width = self.input_shape
        return torch.from_numpy(decode_files([str(path) for path in paths], channels, (height, width)))


def model_info(
    *, model: str, input_shape: tuple[int, int, int], classes: tuple[str, ...], mean: tuple[float, ...], std: tuple[float, ...], **more: Any
) -> dict[str, Any]:
    """The info a model file holds: the five things :func:`load_model` needs, then anything JSON-like."""
    return {"model": model, "input_shape": list(input_shape), "classes": list(classes), "mean": list(mean), "std": list(std), **more}


def save_model(path: Path, network: nn.Module, info: dict[str, Any]) -> None:
    """Write ``network``'s weights with ``info`` to ``path``, replacing a previous file only once the new one is whole."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    write_atomically(path, lambda temporary: torch.save({"batchlr_model": MODEL_FORMAT, "info": info, "state_dict": state}, temporary))


def load_model(path: str | Path, device: str | torch.device = "cpu", trust_code: bool = False) -> TrainedModel:
    """The model in the file ``path`` (written by ``batchlr refit``), on ``device``, in eval mode.

    The file is read with ``weights_only=True``: it runs no code. A file may name a user's
    model, ``package.module:function``, and building that imports and runs the module: only
    with ``trust_code``, since a file from elsewhere could name any module on the path.

    Raises:
        BatchlrError: when the file is missing, not a batchlr model file (a bare state dict
            of batchlr before 0.2 included: refit again), of a newer format, or its weights do
            not fit the model it names.
    """
    from batchlr.objectives.models import build_model, resolve_model

    path = Path(path)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BatchlrError(f"{path}: no such model file") from None
    except Exception as error:  # what unpickling a damaged or foreign file raises varies
        raise BatchlrError(f"{path} is not a model file batchlr can read ({type(error).__name__}); write one with batchlr refit") from None
    if not isinstance(content, dict) or "batchlr_model" not in content:
        raise BatchlrError(f"{path} is not a batchlr model file (a bare state dict holds no model name, classes or normalisation); write one with batchlr refit")
    if not isinstance(content["batchlr_model"], int) or content["batchlr_model"] > MODEL_FORMAT:
        raise BatchlrError(f"{path} was written by a newer batchlr (model format {content['batchlr_model']}); upgrade batchlr to read it")
    info = content.get("info")
    if not isinstance(info, dict) or any(key not in info for key in REQUIRED_INFO) or not _valid(info):
        raise BatchlrError(f"{path}: its info is damaged (it needs {', '.join(REQUIRED_INFO)}); write it again with batchlr refit")
    if ":" in info["model"] and not trust_code:
        raise BatchlrError(
            f"{path} names the model {info['model']}, a Python function: building it imports and runs that module; "
            "if you trust the file, pass trust_code=True (batchlr evaluate/predict --trust-model-code)"
        )
    input_shape = tuple(int(side) for side in info["input_shape"])
    network = build_model(resolve_model(info["model"]), info["model"], input_shape, len(info["classes"]))
    try:
        network.load_state_dict(content["state_dict"])
    except (RuntimeError, KeyError, TypeError) as error:
        raise BatchlrError(f"{path}: its weights do not fit --model {info['model']} ({' '.join(str(error).split())[:200]})") from None
    return TrainedModel(network, info).to(device).eval()


def _valid(info: dict[str, Any]) -> bool:
    shape, classes, mean, std = info["input_shape"], info["classes"], info["mean"], info["std"]
    return (
        isinstance(info["model"], str)
        and isinstance(shape, list) and len(shape) == 3 and all(isinstance(side, int) and side > 0 for side in shape)
        and isinstance(classes, list) and len(classes) >= 2 and all(isinstance(name, str) for name in classes)
        and all(isinstance(values, list) and len(values) == shape[0] for values in (mean, std))
        and all(isinstance(value, (int, float)) and math.isfinite(value) for value in mean + std) and min(std) > 0
    )  # fmt: skip
