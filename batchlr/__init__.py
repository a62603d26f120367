"""batchlr: search batch size, learning rate and optimizer for CNNs with Optuna.

Use a study's exported best configuration in another project::

    cfg = batchlr.load_config("best.json")
    optimizer = cfg.make_optimizer(model.parameters())

and a model that ``batchlr refit`` trained::

    model = batchlr.load_model("model.pt")
    logits = model(model.load_images(["cat.png"]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from batchlr.objectives.models import named_model as build_model
    from batchlr.studies.deploy.best_config import BestConfig
    from batchlr.studies.deploy.config_file import load_config
    from batchlr.studies.deploy.model_file import TrainedModel, load_model

__all__ = ["BestConfig", "TrainedModel", "__version__", "build_model", "load_config", "load_model"]


def __getattr__(name: str) -> Any:
    # Importing torch takes seconds; `batchlr --help` and `import batchlr` should not pay it.
    if name in ("load_config", "BestConfig"):
        from batchlr.studies import deploy

        return getattr(deploy, name)
    if name == "build_model":
        from batchlr.objectives.models import named_model

        return named_model
    if name in ("load_model", "TrainedModel"):
        from batchlr.studies.deploy import model_file

        return getattr(model_file, name)
    raise AttributeError(f"module 'batchlr' has no attribute {name!r}")
