"""What a study searches and how: the search space, samplers and pruners."""

from batchlr.search.pruners import PRUNER_NAMES, PrunerName, make_pruner
from batchlr.search.samplers import SAMPLER_NAMES, SamplerName, make_sampler
from batchlr.search.space import OPTIMIZER_NAMES, Hyperparameters, SearchSpace, parse_range

__all__ = [
    "OPTIMIZER_NAMES",
    "PRUNER_NAMES",
    "SAMPLER_NAMES",
    "Hyperparameters",
    "PrunerName",
    "SamplerName",
    "SearchSpace",
    "make_pruner",
    "make_sampler",
    "parse_range",
]
