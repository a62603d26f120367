"""The probe figures: the LR range test's loss over the learning rate (``batchlr lr-find``) and
the gradient noise scale over the batch size (``batchlr noise-scale``), as
:class:`~batchlr.studies.results.plotting.Figure` records drawn by :mod:`batchlr.studies.results.plotting`.

They draw one probe's result, not a study, so they live apart from the report's figures in
:mod:`batchlr.studies.results.figures`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from batchlr.studies.results.plotting import OKABE_ITO, Figure, Series

if TYPE_CHECKING:  # torch loads with the probes: drawing their results needs none of it
    from batchlr.objectives.probes import NoiseScale, SeededLrRangeTests


def lr_range_figure(tests: SeededLrRangeTests, title: str) -> Figure:
    """The first seed's smoothed loss over the learning rate, the suggestion (of every seed,
    as lr-find prints it) marked."""
    result, suggested = tests.first, tests.suggested_lr
    low, high = min(result.losses), max(result.losses)
    return Figure(
        f"LR range test: {title}",
        "learning rate",
        "smoothed training loss",
        [
            Series("line", result.lrs, result.losses, "smoothed loss", OKABE_ITO[0]),
            Series(
                "line",
                [suggested] * 2,
                [low, high],
                f"suggested lr {suggested:.3g}",
                OKABE_ITO[3],
                dash=True,
            ),
        ],
        x_log=True,
    )


def noise_scale_figure(result: NoiseScale, title: str) -> Figure:
    """The expected squared gradient norm of a batch, |G|^2 + tr(S)/B, over the batch size B:
    past the critical batch size B_simple = tr(S)/|G|^2 a larger batch hardly lowers the noise."""
    sizes = [2.0**power for power in range(max(2, math.ceil(math.log2(4 * result.big_batch))) + 1)]
    expected = [result.gradient_norm_squared + result.covariance_trace / size for size in sizes]
    measured = [result.small_batch, result.big_batch]
    critical = float(result.critical_batch_size)
    return Figure(
        f"Gradient noise scale: {title}",
        "batch size",
        "expected squared gradient norm",
        [
            Series("line", sizes, expected, "|G|^2 + tr(S)/B", OKABE_ITO[0]),
            Series(
                "points",
                measured,
                [
                    result.gradient_norm_squared + result.covariance_trace / size
                    for size in measured
                ],
                "batches measured",
                OKABE_ITO[1],
                size=9,
            ),
            Series(
                "line",
                [critical] * 2,
                [min(expected), max(expected)],
                f"critical batch size ~ {result.critical_batch_size}",
                OKABE_ITO[3],
                dash=True,
            ),
        ],
        x_log=True,
        y_log=True,
        x_whole=True,
    )
