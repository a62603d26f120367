"""Stratified k-fold splits with an optional hold-out, fixed once and stored with a study."""

from __future__ import annotations

import base64
import dataclasses
import zlib

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from batchlr.errors import BatchlrUsageError

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
        return np.flatnonzero((self.fold_of != fold) & (self.fold_of != HOLDOUT)), np.flatnonzero(self.fold_of == fold)

    def holdout(self) -> np.ndarray:
        return np.flatnonzero(self.fold_of == HOLDOUT)

    def smallest_train_size(self) -> int:
        """Samples in the smallest training part of any fold: the largest usable batch."""
        in_folds = int((self.fold_of != HOLDOUT).sum())
        return in_folds - int(np.bincount(self.fold_of[self.fold_of != HOLDOUT], minlength=self.k).max())

    def encode(self) -> str:
        """A compact text form (zlib, base64) that fits a study attribute even for 60,000 samples."""
        packed = zlib.compress(self.fold_of.astype(np.int8).tobytes(), level=9)
        return f"{self.k}:{base64.b64encode(packed).decode('ascii')}"

    @classmethod
    def decode(cls, text: str) -> FoldAssignment:
        k, _, packed = text.partition(":")
        fold_of = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.int8).astype(np.int64)
        return cls(fold_of=fold_of, k=int(k))


def assign_folds(labels: np.ndarray, k: int, seed: int, *, holdout: bool) -> FoldAssignment:
    """Split ``labels`` into ``k`` stratified folds, after a stratified 20 % hold-out if ``holdout``.

    Raises:
        BatchlrError: when ``k`` < 2 or some class has fewer samples than ``k``.
    """
    if k < 2:
        raise BatchlrUsageError(f"--folds {k}: cross-validation needs at least 2 folds")
    fold_of = np.full(len(labels), HOLDOUT, dtype=np.int64)
    in_folds = np.arange(len(labels))
    if holdout:
        in_folds, _ = train_test_split(in_folds, test_size=HOLDOUT_FRACTION, stratify=labels, random_state=seed)
    smallest_class = int(np.unique(labels[in_folds], return_counts=True)[1].min())
    if k > smallest_class:
        raise BatchlrUsageError(
            f"--folds {k}: the smallest class has only {smallest_class} samples to split; use --folds {smallest_class} or fewer"
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, val) in enumerate(splitter.split(in_folds, labels[in_folds])):
        fold_of[in_folds[val]] = fold
    return FoldAssignment(fold_of=fold_of, k=k)
