"""Training outside trials: the LR range test and the gradient noise scale; imports objectives.training only."""

from batchlr.objectives.probes.lr_finder import LrRangeTest, lr_range_test, steepest_descent
from batchlr.objectives.probes.noise_scale import NoiseScale, estimate_noise_scale

__all__ = ["LrRangeTest", "NoiseScale", "estimate_noise_scale", "lr_range_test", "steepest_descent"]
