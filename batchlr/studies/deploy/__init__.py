"""What leaves batchlr: best configs, model files, refit, inference; imports store, results, run, objectives."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchlr.studies.deploy.best_config import BestConfig, export_trial, write_config
    from batchlr.studies.deploy.config_file import MAX_CONFIG_BYTES, load_config
    from batchlr.studies.deploy.inference import (
        Evaluation,
        Prediction,
        evaluate_model,
        evaluation_data,
        image_paths,
        predict,
    )
    from batchlr.studies.deploy.model_file import TrainedModel, load_model
    from batchlr.studies.deploy.refit import refit_best

__all__ = [
    "MAX_CONFIG_BYTES",
    "BestConfig",
    "Evaluation",
    "Prediction",
    "TrainedModel",
    "evaluate_model",
    "evaluation_data",
    "export_trial",
    "image_paths",
    "load_config",
    "load_model",
    "predict",
    "refit_best",
    "write_config",
]

# Each name loads its module on first use: a best config is written and read without torch,
# which model files, refit and inference import and which takes seconds to load.
_HOMES = {
    "BestConfig": "best_config",
    "Evaluation": "inference",
    "MAX_CONFIG_BYTES": "config_file",
    "Prediction": "inference",
    "TrainedModel": "model_file",
    "evaluate_model": "inference",
    "evaluation_data": "inference",
    "export_trial": "best_config",
    "image_paths": "inference",
    "load_config": "config_file",
    "load_model": "model_file",
    "predict": "inference",
    "refit_best": "refit",
    "write_config": "best_config",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
