"""CNNs by name and users' model factories; imports torch (torchvision when a model needs it), no other room."""

from batchlr.objectives.models.catalog import (
    EXACT_IMAGE_SIZES,
    MINIMUM_IMAGE_SIZES,
    SMALL_IMAGE_MODELS,
    GreyToRGB,
    ModelFactory,
    build_model,
    convnet,
    named_model,
    parameter_count,
    resolve_model,
)

__all__ = [
    "EXACT_IMAGE_SIZES",
    "MINIMUM_IMAGE_SIZES",
    "SMALL_IMAGE_MODELS",
    "GreyToRGB",
    "ModelFactory",
    "build_model",
    "convnet",
    "named_model",
    "parameter_count",
    "resolve_model",
]
