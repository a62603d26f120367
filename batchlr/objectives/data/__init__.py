"""Data sets in memory as uint8 tensors, their folds and split duplicates; imports objectives.files, never training."""

from batchlr.objectives.data.datasets import (
    ImageData,
    check_dataset_name,
    dataset_slug,
    load_dataset,
    load_test_split,
)
from batchlr.objectives.data.duplicates import SplitDuplicates, split_duplicates
from batchlr.objectives.data.folds import (
    HOLDOUT,
    HOLDOUT_FRACTION,
    FoldAssignment,
    assign_folds,
    images_needed,
)

__all__ = [
    "HOLDOUT",
    "HOLDOUT_FRACTION",
    "FoldAssignment",
    "ImageData",
    "SplitDuplicates",
    "assign_folds",
    "check_dataset_name",
    "dataset_slug",
    "images_needed",
    "load_dataset",
    "load_test_split",
    "split_duplicates",
]
