"""The lines of ``refit``, ``evaluate`` and ``predict``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from batchlr.studies.render.phrases import attached

if TYPE_CHECKING:
    from batchlr.objectives.data import SplitDuplicates
    from batchlr.studies.deploy.inference import Evaluation, Prediction
    from batchlr.studies.deploy.refit import RefitResult


def refitted(result: RefitResult, path: Path) -> tuple[list[str], str | None]:
    """What ``batchlr refit`` prints, and a warning when the model could not be attached to the study."""
    line = (
        f"test accuracy {result.test_accuracy:.4f} on the {result.test_split} ({result.test_samples} samples); "
        f"trial {result.trial} retrained on {result.train_samples} samples in {result.seconds:.1f} s; model in {path}"
    )
    lines, warning = attached("model", result.artifacts)
    return [line, *lines], warning


def evaluated(result: Evaluation) -> str:
    """What ``batchlr evaluate`` prints: the accuracy, each class's, and the confusion matrix."""
    width = max(5, *map(len, result.classes))
    lines = [
        f"{result.dataset} ({result.split}): accuracy {result.accuracy:.4f} on {result.images:,} images",
        "",
        f"{'class':<{width}}  {'images':>6}  accuracy",
    ]
    lines += [
        f"{name:<{width}}  {row['images']:>6}  {row['accuracy']:>8.4f}"
        for name, row in result.per_class.items()
    ]
    column = max(5, len(str(max(max(row) for row in result.confusion))))
    lines += [
        "",
        "confusion matrix: a row per true class, a column per predicted class (first letters)",
    ]
    lines.append(
        " " * width + "  " + " ".join(f"{name[:column]:>{column}}" for name in result.classes)
    )
    lines += [
        f"{name:<{width}}  " + " ".join(f"{count:>{column}}" for count in row)
        for name, row in zip(result.classes, result.confusion, strict=True)
    ]
    return "\n".join(lines)


def predictions(results: Sequence[Prediction]) -> str:
    """What ``batchlr predict`` prints: a line per image, its most probable classes first."""
    return "\n".join(
        f"{result.path}: "
        + ", ".join(f"{name} {probability:.3f}" for name, probability in result.top)
        for result in results
    )


def split_duplicates_warning(found: SplitDuplicates | None, sources: Sequence[str]) -> str | None:
    """A warning when a new study's folds split identical images, else None. ``sources``
    names the images by file (an image folder); without it they are named by index."""
    if found is None:
        return None
    first, copy = found.example
    example = (
        f"{sources[first]} and {sources[copy]}"
        if sources
        else f"training images {first} and {copy}"
    )
    return (
        f"warning: {found.images} training images have an identical copy in another fold or in the hold-out "
        f"(e.g. {example}): validation then scores images that training saw, so accuracy comes out too high; "
        "remove the duplicate images and create a new study"
    )
