"""Disk to NumPy arrays: data set files, image folders, their cache; no torch, as decoding workers import it."""

from batchlr.objectives.files.dataset_files import (
    CIFAR10_CLASSES,
    CIFAR_FOLDER,
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
)
from batchlr.objectives.files.image_cache import CacheEntry
from batchlr.objectives.files.image_files import (
    IMG_EXTENSIONS,
    class_name_problem,
    list_image_folder,
    walk_image_files,
)
from batchlr.objectives.files.readers import decode_files, read_image_folder

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_FOLDER",
    "CIFAR_TEST_FILE",
    "CIFAR_TRAIN_FILES",
    "IMG_EXTENSIONS",
    "CacheEntry",
    "class_name_problem",
    "decode_files",
    "list_image_folder",
    "read_image_folder",
    "walk_image_files",
]
