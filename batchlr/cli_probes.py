"""``batchlr lr-find`` and ``batchlr noise-scale``: training outside trials, to measure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchlr.cli_group import echo_lines
from batchlr.cli_options import (
    ATTACH_OPTIONS,
    BATCH_OPTION,
    DATA_OPTIONS,
    JSON_OPTION,
    MOMENTUM_OPTION,
    OPTIMIZER_OPTION,
    STORAGE_OPTION,
    STUDY_ARGUMENT,
    FiniteFloatRange,
    given,
)
from batchlr.json_text import json_text
from batchlr.objectives.settings import MAX_EPOCHS
from batchlr.search.space import MAX_LR

# the studies load torch, which a command's --help need not wait for
if TYPE_CHECKING:
    from batchlr.studies.results import Attachment
    from batchlr.studies.run import Probe


@click.command("lr-find")
@DATA_OPTIONS
@BATCH_OPTION
@OPTIMIZER_OPTION
@MOMENTUM_OPTION
# The sweep of lr_finder's START_LR, END_LR and LR_COUNT (a test keeps them equal), written
# out so that --help need not import torch.
@click.option(
    "--start-lr",
    type=FiniteFloatRange(0, MAX_LR, min_open=True),
    default=1e-5,
    help="First learning rate of the sweep.",
)
@click.option(
    "--end-lr",
    type=FiniteFloatRange(0, MAX_LR, min_open=True),
    default=10.0,
    help="Last learning rate of the sweep.",
)
@click.option(
    "--lr-count",
    type=click.IntRange(min=20),
    default=300,
    help="Learning rates tried between them, one optimizer step each.",
)
@click.option(
    "--steps",
    "old_lr_count",
    type=click.IntRange(min=20),
    hidden=True,
    help="The old name of --lr-count.",
)
@JSON_OPTION
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), help="Save the loss curve as a PNG."
)
@ATTACH_OPTIONS
def lr_find(
    as_json: bool,
    plot: Path | None,
    old_lr_count: int | None,
    study_name: str | None,
    storage: str,
    artifacts: Path | None,
    **option: Any,
) -> None:
    """LR range test: raise the learning rate exponentially and suggest the loss's valley.

    It trains as a study's trials do: those of --study, or else of a new study with these
    options (the default precision, no augmentation), in batches of --batch-size, or of every
    sample where there are fewer than its default. The valley is the lr two thirds of the
    way down the smoothed loss's longest descent, found as fastai finds it. It runs twice,
    with --seed and the next seed, suggests the geometric mean of the two, and warns when they
    lie more than 3x apart.
    """
    from batchlr.studies import render
    from batchlr.studies.results import attach_figure, lr_range_figure
    from batchlr.studies.run import probe_hyperparameters, run_lr_find

    if old_lr_count is not None:
        click.echo(
            "warning: lr-find --steps is now --lr-count; --steps goes in the next release", err=True
        )
        option["lr_count"] = old_lr_count
    probe = _open_probe(option, study_name, storage)
    source = click.get_current_context().get_parameter_source("batch_size")
    if source == click.core.ParameterSource.DEFAULT:  # a small folder: the batch it can hold
        option["batch_size"] = min(option["batch_size"], len(probe.indices))
    hyperparameters = probe_hyperparameters(
        option["batch_size"], option["optimizer"], option["momentum"]
    )
    result = run_lr_find(
        probe,
        hyperparameters,
        option["seed"],
        option["start_lr"],
        option["end_lr"],
        option["lr_count"],
        plot,
    )
    if as_json:
        click.echo(json_text(render.lr_range_record(result, study_name)))
    else:
        echo_lines(*render.lr_range(result, study_name, option["optimizer"]))
    if study_name:
        what = f"{option['optimizer']}, batch {option['batch_size']}"
        figure = lr_range_figure(result, probe.title(what))
        attachment = attach_figure(storage, study_name, figure, "lr-find.png", artifacts)
        _say_attached("LR range test", attachment, as_json)


@click.command("noise-scale")
@DATA_OPTIONS
@click.option(
    "--small-batch",
    type=click.IntRange(min=1),
    default=32,
    help="The smaller of the two batch sizes the estimator compares.",
)
@click.option(
    "--big-batch",
    type=click.IntRange(min=2),
    default=1024,
    help="The larger one; at most the training samples.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=20,
    help="Big batches drawn; the estimate averages over them.",
)
@click.option(
    "--epochs",
    type=click.IntRange(0, MAX_EPOCHS),
    default=0,
    help="Train this long first; 0 measures at initialisation.",
)
@BATCH_OPTION
@click.option(
    "--lr",
    type=FiniteFloatRange(0, MAX_LR, min_open=True),
    default=1e-3,
    help="Learning rate of that training.",
)
@OPTIMIZER_OPTION
@MOMENTUM_OPTION
@JSON_OPTION
@ATTACH_OPTIONS
def noise_scale(
    as_json: bool, study_name: str | None, storage: str, artifacts: Path | None, **option: Any
) -> None:
    """Estimate the gradient noise scale B_simple, which predicts the critical batch size.

    Its gradients are those of a study's trials: of --study, or else of a new study with these
    options.
    """
    from batchlr.studies import render
    from batchlr.studies.results import attach_figure, noise_scale_figure
    from batchlr.studies.run import probe_hyperparameters, remember_noise_scale, run_noise_scale

    probe = _open_probe(option, study_name, storage)
    hyperparameters = probe_hyperparameters(
        option["batch_size"], option["optimizer"], option["momentum"], option["lr"]
    )
    result = run_noise_scale(
        probe,
        hyperparameters,
        option["seed"],
        option["epochs"],
        option["small_batch"],
        option["big_batch"],
        option["repeats"],
    )
    click.echo(
        json_text(render.noise_scale_record(result, study_name))
        if as_json
        else "\n".join(
            render.noise_scale(result, option["epochs"], study_name, probe.largest_batch)
        )
    )
    if study_name:
        remember_noise_scale(storage, study_name, result, option["epochs"])
        when = f"after {option['epochs']} epochs" if option["epochs"] else "at initialisation"
        figure = noise_scale_figure(result, probe.title(when))
        attachment = attach_figure(storage, study_name, figure, "noise-scale.png", artifacts)
        _say_attached("noise-scale curve", attachment, as_json)


@click.command()
@STUDY_ARGUMENT
@STORAGE_OPTION
@DATA_OPTIONS
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=20,
    help="Timed optimizer steps per batch size, after 3 that warm the device up.",
)
@JSON_OPTION
def throughput(study_name: str, storage: str, steps: int, as_json: bool, **option: Any) -> None:
    """Time the study's model and recipe at the batch sizes of its near-optimal band on
    --device, and recommend the one that reaches the band's accuracy soonest there, with its lr."""
    from batchlr.studies import render
    from batchlr.studies.run import measure_throughput

    probe = _open_probe(option, study_name, storage)
    result = measure_throughput(storage, probe, option["seed"], steps)
    if as_json:
        click.echo(json_text(result.to_record()))
    else:
        click.echo("\n".join(render.throughput(result)))


SPEC_OPTIONS = ("dataset", "data_dir", "image_size", "model", "seed")
"""The probes' options that are study settings: a study's own unless given."""


def _open_probe(option: dict[str, Any], study_name: str | None, storage: str) -> Probe:
    """The trainer and samples that --study's trials train with, or a new study's of the options."""
    from batchlr.studies.run import RunOptions, open_probe
    from batchlr.studies.store import StudySpec

    ctx = click.get_current_context()
    requested = StudySpec.from_attrs({name: option[name] for name in SPEC_OPTIONS})
    options = RunOptions(option["seed"], option["device"], cache_dir=option["cache_dir"])
    return open_probe(requested, given(ctx, list(SPEC_OPTIONS)), options, storage, study_name)


def _say_attached(what: str, attachment: Attachment, as_json: bool) -> None:
    """Where a probe's figure was attached: on stderr under ``--json``, whose stdout is the
    record alone."""
    from batchlr.studies import render

    lines, warning = render.attached(what, attachment)
    if as_json:
        click.echo("\n".join(filter(None, (*lines, warning))), err=True)
    else:
        echo_lines(lines, warning)
