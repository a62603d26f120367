"""The lines of the probes: the LR range test's and the gradient noise scale's."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchlr.objectives.probes import NoiseScale, SeededLrRangeTests
    from batchlr.objectives.trainer import Regime


# An LR range test whose smoothed loss fell less than this found no descent.
RELIABLE_LOSS_DROP = 0.05


def lr_test_warning(loss_drop: float, spread: float, remedy: str, what: str = "") -> str | None:
    """A warning (one line per fault) when an LR range test's loss fell less than
    :data:`RELIABLE_LOSS_DROP` or its seeds' suggestions lie more than
    :data:`~batchlr.objectives.probes.lr_finder.SPREAD_LIMIT` apart, else None; ``what``
    names the test where several ran."""
    from batchlr.objectives.probes.lr_finder import SPREAD_LIMIT

    name = f"the LR range test{f' of {what}' if what else ''}"
    faults = []
    if loss_drop < RELIABLE_LOSS_DROP:
        faults.append(f"{name}'s loss fell only {loss_drop:.1%}, so its suggestion is weak")
    if spread > SPREAD_LIMIT:
        faults.append(f"{name}'s two seeds suggest lrs {spread:.1f}x apart, so it is unsteady")
    return "\n".join(f"warning: {fault}; {remedy}" for fault in faults) or None


def regime(trained: Regime, study: str | None) -> str:
    """The line that says how a probe trained: as ``study``'s trials, or a new study's."""
    whose = f"study {study!r}'s trials" if study else "the trials of a new study with these options"
    augment = f"augment {','.join(trained.augment)}" if trained.augment else "no augmentation"
    smoothing = (
        f"label smoothing {trained.label_smoothing:g}"
        if trained.label_smoothing
        else "no label smoothing"
    )
    passes = math.ceil(trained.batch_size / trained.micro_batch)
    split = (
        f"batch {trained.batch_size} in {passes} micro-batches of up to {trained.micro_batch}"
        if passes > 1
        else f"batch {trained.batch_size} in one pass"
    )
    return f"trained as {whose}: {trained.precision}, {augment}, {smoothing}, {split}"


def regime_record(trained: Regime, study: str | None) -> dict[str, Any]:
    """The regime in a probe's ``--json`` record."""
    return {"study": study, **dataclasses.asdict(trained)}


def lr_range(
    tests: SeededLrRangeTests, study: str | None, optimizer: str
) -> tuple[list[str], str | None]:
    """What ``batchlr lr-find`` prints: the suggestion, each seed's, and the search around it
    (a new study's: a study's lr range is fixed when it is created, and the range is
    ``optimizer``'s alone), how it trained (see :func:`regime`), and a warning when a curve
    had no real descent or the seeds disagree, or None."""
    from batchlr.objectives.probes.lr_finder import SEARCH_RANGE

    first = tests.first
    stop = (
        f"stopped at lr {first.lrs[-1]:.3g} as the loss diverged"
        if first.stopped_early
        else f"swept to lr {first.lrs[-1]:.3g}"
    )
    seeds = ", ".join(
        f"{test.suggested_lr:.3g} at seed {seed}"
        for seed, test in zip(tests.seeds, tests.tests, strict=True)
    )
    suggested = tests.suggested_lr
    lines = [
        f"suggested lr {suggested:.3g} ({seeds}: {tests.spread:.1f}x apart)",
        f"seed {tests.seeds[0]}: {len(first.lrs)} learning rates, {stop}",
        f"search around it in a new study: batchlr run --study NAME --optimizers {optimizer} "
        f"--lr {suggested * SEARCH_RANGE[0]:.2g}:{suggested * SEARCH_RANGE[1]:.2g}",
        regime(first.regime, study),
    ]
    return lines, lr_test_warning(
        tests.loss_drop, tests.spread, "try more --lr-count, another --optimizer or --batch-size"
    )


def lr_range_record(tests: SeededLrRangeTests, study: str | None) -> dict[str, Any]:
    """What ``batchlr lr-find --json`` prints: the suggestion, each seed's, and the first
    seed's curve."""
    first = tests.first
    return {
        "suggested_lr": tests.suggested_lr,
        "seeds": [
            {"seed": seed, "suggested_lr": test.suggested_lr, "loss_drop": test.loss_drop}
            for seed, test in zip(tests.seeds, tests.tests, strict=True)
        ],
        "spread": tests.spread,
        "lrs": first.lrs,
        "losses": first.losses,
        "stopped_early": first.stopped_early,
        "loss_drop": tests.loss_drop,
        "regime": regime_record(first.regime, study),
    }


def noise_scale_record(result: NoiseScale, study: str | None) -> dict[str, Any]:
    """What ``batchlr noise-scale --json`` prints."""
    return {
        "critical_batch_size": result.critical_batch_size,
        "suggested_batch_range": result.suggested_batch_range,
        **dataclasses.asdict(result),
        "regime": regime_record(result.regime, study),
    }


def noise_scale(
    result: NoiseScale, epochs: int, study: str | None, largest_batch: int
) -> list[str]:
    """What ``batchlr noise-scale`` prints: the estimate, its parts, the batch range it suggests
    (and whether the data can batch that much: ``largest_batch`` is a fold's training samples),
    how its gradients were taken (see :func:`regime`), and where the measurement is kept."""
    when = f"after {epochs} epochs" if epochs else "at initialisation"
    low, high = result.suggested_batch_range
    lines = [
        f"gradient noise scale B_simple = {result.noise_scale:.1f} {when} (|G|^2 "
        f"{result.gradient_norm_squared:.3g}, tr(S) {result.covariance_trace:.3g}; batches "
        f"{result.small_batch} and {result.big_batch}, {result.repeats} repeats)",
        f"critical batch size ~ {result.critical_batch_size}: batches up to it cut the steps "
        "almost proportionally, larger ones mostly add compute",
        f"suggested batch range: {low}:{high}",
    ]
    if high > largest_batch:
        lines.append(
            f"note: a fold trains on {largest_batch} samples, so batches above {largest_batch} "
            f"cannot be drawn: the data set is too small for {'this range' if low > largest_batch else 'its top'}; "
            "the noise scale grows as the loss falls, so measure after some --epochs"
        )
    lines.append(regime(result.regime, study))
    if study:
        lines.append(
            f"kept with study {study!r}: its export extrapolates the lr ridge up to batch "
            f"{result.critical_batch_size}"
        )
    return lines
