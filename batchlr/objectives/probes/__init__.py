"""Training outside trials through the trials' Trainer (LR range test, noise scale, memory); imports the trainer."""

from batchlr.objectives.probes.lr_finder import (
    SEARCH_RANGE,
    LrRangeTest,
    SeededLrRangeTests,
    seeded_lr_range_tests,
    valley,
)
from batchlr.objectives.probes.memory import largest_micro_batch, largest_passing
from batchlr.objectives.probes.noise_scale import (
    NoiseScale,
    estimate_noise_scale,
    trained_noise_scale,
)
from batchlr.objectives.probes.speed import images_per_second

__all__ = [
    "SEARCH_RANGE",
    "LrRangeTest",
    "NoiseScale",
    "SeededLrRangeTests",
    "estimate_noise_scale",
    "images_per_second",
    "largest_micro_batch",
    "largest_passing",
    "seeded_lr_range_tests",
    "trained_noise_scale",
    "valley",
]
