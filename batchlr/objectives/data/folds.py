"""Stratified k-fold splits with an optional hold-out, fixed once and stored with a study."""

from __future__ import annotations

import base64
import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

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
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, val) in enumerate(splitter.split(in_folds, labels[in_folds])):
        fold_of[in_folds[val]] = fold
    return FoldAssignment(fold_of=fold_of, k=k)


def _outside_holdout(labels: np.ndarray, sizes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The indices the hold-out leaves for the folds, at least ``k`` of every class.

    scikit-learn's stratified split first, as batchlr has always drawn it, so that a seed
    still gives the folds it gave. It rounds over the whole data set, though: it refuses a
    hold-out smaller than the number of classes and may leave a small class fewer than
    ``k``. There every class gives :func:`holdout_count` of its own instead, which classes
    of :func:`images_needed` images always allow.
    """
    kept: np.ndarray  # train_test_split returns arrays of the type it is given
    try:
        kept, _ = train_test_split(
            np.arange(len(labels)), test_size=HOLDOUT_FRACTION, stratify=labels, random_state=seed
        )
        if np.bincount(labels[kept], minlength=len(sizes)).min() >= k:
            return kept
    except ValueError:
        pass
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
