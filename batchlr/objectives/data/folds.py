"""Stratified k-fold splits with an optional hold-out, fixed once and stored with a study.

A seed draws the folds that scikit-learn 1.x's stratified splits draw, as batchlr always has,
with the same calls on NumPy's ``RandomState``; scikit-learn itself is not imported, as that
takes a quarter of every command's start.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import zlib
from collections.abc import Sequence

import numpy as np

from batchlr.errors import BatchlrError, BatchlrUsageError

HOLDOUT = -1
"""Fold id of samples kept out of cross-validation for a final test score."""

HOLDOUT_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class FoldAssignment:
    """The fold of every training sample: ``0..k-1``, or :data:`HOLDOUT`."""

    fold_of: np.ndarray
    k: int

    def train_val(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices to train and validate on for ``fold``; the hold-out is in neither."""
        return np.flatnonzero((self.fold_of != fold) & (self.fold_of != HOLDOUT)), np.flatnonzero(
            self.fold_of == fold
        )

    def holdout(self) -> np.ndarray:
        return np.flatnonzero(self.fold_of == HOLDOUT)

    def searched(self) -> np.ndarray:
        """Indices of every sample in the folds: what trials, refits and probes may train on."""
        return np.flatnonzero(self.fold_of != HOLDOUT)

    def smallest_train_size(self) -> int:
        """Samples in the smallest training part of any fold: the largest usable batch."""
        in_folds = int((self.fold_of != HOLDOUT).sum())
        return in_folds - int(
            np.bincount(self.fold_of[self.fold_of != HOLDOUT], minlength=self.k).max()
        )

    def encode(self) -> str:
        """A compact text form (zlib, base64) that fits a study attribute even for 60,000 samples."""
        packed = zlib.compress(self.fold_of.astype(np.int8).tobytes(), level=9)
        return f"{self.k}:{base64.b64encode(packed).decode('ascii')}"

    @classmethod
    def decode(cls, text: str) -> FoldAssignment:
        k, _, packed = text.partition(":")
        fold_of = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.int8).astype(
            np.int64
        )
        return cls(fold_of=fold_of, k=int(k))


def holdout_count(class_size: int) -> int:
    """Images of a class of ``class_size`` that the hold-out takes where scikit-learn's split
    cannot serve small classes (see :func:`_outside_holdout`): :data:`HOLDOUT_FRACTION` of
    them rounded half up, and at least one."""
    return max(1, int(class_size * HOLDOUT_FRACTION + 0.5))


def images_needed(k: int, *, holdout: bool) -> int:
    """The fewest images every class needs for one in each of ``k`` folds after its
    :func:`holdout_count`; enough, whatever the other classes hold."""
    needed = k
    while holdout and needed - holdout_count(needed) < k:
        needed += 1
    return needed


def assign_folds(
    labels: np.ndarray, k: int, seed: int, *, holdout: bool, classes: Sequence[str] = ()
) -> FoldAssignment:
    """Split ``labels`` into ``k`` stratified folds, after a stratified 20 % hold-out if
    ``holdout``. ``classes`` names the labels in errors.

    Raises:
        BatchlrUsageError: when ``k`` < 2, or when some class is too small for ``k`` folds
            (see :func:`images_needed`) but large enough for fewer.
        BatchlrError: when some class is too small even for 2 folds.
    """
    if k < 2:
        raise BatchlrUsageError(f"--folds {k}: cross-validation needs at least 2 folds")
    # Labels are 0..classes-1: a class named in ``classes`` without an image counts as size 0.
    sizes = np.bincount(labels, minlength=len(classes))
    _check_class_sizes(sizes, k, holdout, classes)
    in_folds = _outside_holdout(labels, sizes, k, seed) if holdout else np.arange(len(labels))
    fold_of = np.full(len(labels), HOLDOUT, dtype=np.int64)
    fold_of[in_folds] = _stratified_folds(labels[in_folds], k, seed)
    return FoldAssignment(fold_of=fold_of, k=k)


def _stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold of each of ``labels`` as ``StratifiedKFold(k, shuffle=True, random_state=seed)``
    deals them: each class's share of every fold dealt round robin over the sorted labels,
    then shuffled within the class, classes in order of first appearance."""
    generator = np.random.RandomState(seed)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    _, appearance = np.unique(first, return_inverse=True)
    encoded = appearance[inverse]
    ordered = np.sort(encoded)
    shares = np.asarray([np.bincount(ordered[i::k], minlength=len(first)) for i in range(k)])
    fold_of = np.empty(len(labels), dtype=np.int64)
    for label in range(len(first)):
        folds = np.arange(k).repeat(shares[:, label])
        generator.shuffle(folds)
        fold_of[encoded == label] = folds
    return fold_of


def _stratified_holdout(labels: np.ndarray, seed: int) -> np.ndarray | None:
    """The indices that ``train_test_split(test_size=HOLDOUT_FRACTION, stratify=labels,
    random_state=seed)`` keeps for training, or None where it refuses: a class of one image,
    or fewer images on either side than classes."""
    held = math.ceil(HOLDOUT_FRACTION * len(labels))
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    if sizes.min() < 2 or min(held, len(labels) - held) < len(sizes):
        return None
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    generator = np.random.RandomState(seed)
    kept_sizes = _approximate_mode(sizes, len(labels) - held, generator)
    # The held-out sizes are the rest, but their rounding may draw from the generator.
    _approximate_mode(sizes - kept_sizes, held, generator)
    kept: list[int] = []
    for indices, size, kept_size in zip(members, sizes, kept_sizes, strict=True):
        kept.extend(indices.take(generator.permutation(size), mode="clip")[:kept_size])
    return generator.permutation(kept)


def _approximate_mode(
    sizes: np.ndarray, draws: int, generator: np.random.RandomState
) -> np.ndarray:
    """How many of ``draws`` images each class of ``sizes`` gives: its share rounded down,
    then one more to the classes of the largest remainders, ties drawn at random."""
    continuous = sizes / sizes.sum() * draws
    floored = np.floor(continuous)
    missing = int(draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        (tied,) = np.where(remainder == value)
        added = min(len(tied), missing)
        floored[generator.choice(tied, size=added, replace=False)] += 1
        missing -= added
    return np.asarray(floored, dtype=np.int64)


def _outside_holdout(labels: np.ndarray, sizes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The indices the hold-out leaves for the folds, at least ``k`` of every class.

    scikit-learn's stratified split first, as batchlr has always drawn it, so that a seed
    still gives the folds it gave. It rounds over the whole data set, though: it refuses a
    hold-out smaller than the number of classes and may leave a small class fewer than
    ``k``. There every class gives :func:`holdout_count` of its own instead, which classes
    of :func:`images_needed` images always allow.
    """
    kept = _stratified_holdout(labels, seed)
    if kept is not None and np.bincount(labels[kept], minlength=len(sizes)).min() >= k:
        return kept
    generator = np.random.default_rng(seed)
    members = [
        generator.permutation(np.flatnonzero(labels == label)) for label in range(len(sizes))
    ]
    return np.concatenate([part[holdout_count(len(part)) :] for part in members])


def _check_class_sizes(sizes: np.ndarray, k: int, holdout: bool, classes: Sequence[str]) -> None:
    """One line naming the smallest class when it cannot give an image to each fold (and the hold-out)."""
    needed = images_needed(k, holdout=holdout)
    if len(sizes) == 0:
        raise BatchlrError(
            f"no images to split: {k} folds need at least {needed} images in every class"
        )
    label = int(np.argmin(sizes))
    size = int(sizes[label])
    if size >= needed:
        return
    name = repr(classes[label]) if label < len(classes) else str(label)
    after = f"{k} folds after the {HOLDOUT_FRACTION:.0%} hold-out" if holdout else f"{k} folds"
    problem = (
        f"class {name} has only {size} image{'s' if size != 1 else ''}: {after} need at least "
        f"{needed} images in every class"
    )
    most = size - holdout_count(size) if holdout else size
    if most >= 2:
        fewer = "2" if most == 2 else f"{most} or fewer"
        raise BatchlrUsageError(f"--folds {k}: {problem}; use --folds {fewer}, or add images")
    fewest = "" if k == 2 else f" (--folds 2 needs {images_needed(2, holdout=holdout)})"
    raise BatchlrError(f"{problem}{fewest}; add images to class {name}")
