"""Identical images on both sides of a split: validation (or the hold-out) then scores images
that training saw, and accuracy comes out too high."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class SplitDuplicates:
    """Identical images that a fold assignment puts in different parts: two folds, or a fold and the hold-out."""

    images: int
    """Images with an identical copy in another part."""
    example: tuple[int, int]
    """Indices of one such pair: the first of these images, and its first copy in another part."""


def image_digests(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """A 64-bit BLAKE2b digest of each image's bytes, as uint64.

    Identical images share a digest; different ones do with a chance of about N²/2⁶⁵
    (1e-10 for 60,000 images). Hashing rows costs about a second for CIFAR-10's 50,000.
    """
    rows = np.ascontiguousarray(np.asarray(images)).reshape(len(images), -1)
    return np.frombuffer(
        b"".join(hashlib.blake2b(row.data, digest_size=8).digest() for row in rows), dtype=np.uint64
    )


def split_duplicates(
    images: np.ndarray | torch.Tensor, fold_of: np.ndarray
) -> SplitDuplicates | None:
    """The identical images that ``fold_of`` (a fold id per image, or the hold-out's) puts in
    different parts, or None. Copies within one part are harmless and not counted."""
    if len(images) == 0:
        return None
    _, group, sizes = np.unique(image_digests(images), return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    lowest = np.full(len(sizes), np.iinfo(np.int64).max)
    highest = np.full(len(sizes), np.iinfo(np.int64).min)
    np.minimum.at(lowest, group, fold_of)
    np.maximum.at(highest, group, fold_of)
    split = (lowest != highest)[group]
    if not split.any():
        return None
    first = int(np.flatnonzero(split)[0])
    copy = int(np.flatnonzero((group == group[first]) & (fold_of != fold_of[first]))[0])
    return SplitDuplicates(images=int(split.sum()), example=(first, copy))
