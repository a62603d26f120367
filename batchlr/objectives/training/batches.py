"""Images kept on the device as uint8 and made into a model's inputs one batch at a time:
normalised there with statistics of the training images, and augmented for training.

A quarter of float32's memory on the host and the device, and the conversion costs one
fused multiply-add per pixel of each batch, where the model spends thousands.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

STATISTICS_CHUNK = 1024
"""Images read at a time while the normalisation counts pixel values."""

MIN_STD = 1e-6
"""The floor of a channel's std (of pixels scaled to 0..1): an image set of one colour has std
0, which the normalisation divides by. A model file's std is refused below it
(:mod:`batchlr.studies.deploy.model_file`): a far smaller one overflows the float32 scale."""


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and standard deviation of pixel values scaled to [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, images: torch.Tensor, indices: np.ndarray | torch.Tensor) -> Normalisation:
        """The statistics of ``images[indices]`` (uint8, N×C×H×W), exact, from a histogram of
        each channel's 256 values counted a chunk of images at a time: no float copy of the
        data set is ever made. Pass the training images only: the hold-out must not shape what
        the model sees."""
        indices = torch.as_tensor(indices, device=images.device)
        channels = images.shape[1]
        counts = torch.zeros(channels, 256, dtype=torch.float64, device=images.device)
        for chunk in indices.split(STATISTICS_CHUNK):
            block = images[chunk]
            for channel in range(channels):
                counts[channel] += torch.bincount(block[:, channel].flatten(), minlength=256)
        values = torch.arange(256, dtype=torch.float64, device=images.device) / 255
        pixels = counts.sum(dim=1).clamp_min(2)
        mean = counts @ values / pixels
        variance = (counts @ values.square() / pixels - mean.square()) * pixels / (pixels - 1)
        std = variance.clamp_min(0).sqrt().clamp_min(MIN_STD)
        return cls(tuple(mean.tolist()), tuple(std.tolist()))


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random horizontal flips, and random crops back to the image size after reflection
    padding of ``crop_padding`` pixels (0: no crops), drawn afresh for every image of every
    training batch."""

    flip: bool = False
    crop_padding: int = 0

    def __bool__(self) -> bool:
        return self.flip or self.crop_padding > 0

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.flip:
            flipped = torch.rand(len(batch), generator=generator, device=batch.device) < 0.5
            batch = torch.where(flipped[:, None, None, None], batch.flip(3), batch)
        if self.crop_padding:
            batch = _random_crops(batch, self.crop_padding, generator)
        return batch


def _random_crops(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to ``padding`` pixels each way, the border reflected: one
    gather over the padded batch, without a Python loop over images."""
    size, channels, height, width = batch.shape
    padded = F.pad(batch, (padding,) * 4, mode="reflect")
    offsets = torch.randint(
        0, 2 * padding + 1, (2, size, 1), generator=generator, device=batch.device
    )
    rows = offsets[0] + torch.arange(height, device=batch.device)
    columns = offsets[1] + torch.arange(width, device=batch.device)
    positions = (rows[:, :, None] * padded.shape[3] + columns[:, None, :]).reshape(size, 1, -1)
    return (
        padded.flatten(2)
        .gather(2, positions.expand(-1, channels, -1))
        .view(size, channels, height, width)
    )


class DeviceImages:
    """A data set's uint8 images and labels on one device, served as normalised float batches."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        normalisation: Normalisation,
        augmentation: Augmentation = Augmentation(),
    ) -> None:
        self.images, self.labels, self.augmentation = images, labels, augmentation
        self.normalisation = normalisation
        mean = torch.tensor(normalisation.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(normalisation.std, device=images.device).view(1, -1, 1, 1)
        # (x / 255 - mean) / std as one multiply-add.
        self.scale, self.shift = 1 / (255 * std), -mean / std

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, indices: torch.Tensor) -> torch.Tensor:
        """The normalised images at ``indices`` (of any shape, e.g. folds × batch), as the model
        sees them in validation."""
        return torch.addcmul(self.shift, self.images[indices].float(), self.scale)

    def training_inputs(
        self, indices: torch.Tensor, generators: list[torch.Generator]
    ) -> torch.Tensor:
        """:meth:`inputs` of ``indices`` (folds × batch), each fold's row augmented with random
        draws from its own generator, so that a fold sees the same images however many folds
        train beside it."""
        batch = self.inputs(indices)
        if not self.augmentation:
            return batch
        return torch.stack(
            [
                self.augmentation(fold, generator)
                for fold, generator in zip(batch, generators, strict=True)
            ]
        )
