"""``batchlr lr-find`` and ``batchlr noise-scale``: training outside trials, to measure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batchlr.cli_group import echo_lines
from batchlr.cli_options import (
    ATTACH_OPTIONS,
    BATCH_OPTION,
    DATA_OPTIONS,
    JSON_OPTION,
    MAX_EPOCHS,
    MOMENTUM_OPTION,
    OPTIMIZER_OPTION,
    FiniteFloatRange,
)
from batchlr.json_text import json_text
from batchlr.search.space import (
    MAX_LR,
)


@click.command("lr-find")
@DATA_OPTIONS
@BATCH_OPTION
@OPTIMIZER_OPTION
@MOMENTUM_OPTION
@click.option(
    "--start-lr",
    type=FiniteFloatRange(0, MAX_LR, min_open=True),
    default=1e-7,
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
    default=100,
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
    """LR range test: raise the learning rate exponentially and suggest where the loss falls fastest."""
    from batchlr.studies import render
    from batchlr.studies.results import attach_figure, lr_range_figure
    from batchlr.studies.run import run_lr_find

    if old_lr_count is not None:
        click.echo(
            "warning: lr-find --steps is now --lr-count; --steps goes in the next release", err=True
        )
        option["lr_count"] = old_lr_count
    _check_study(storage, study_name)
    result = run_lr_find(**option, plot=plot)
    if as_json:
        click.echo(json_text(render.lr_range_record(result)))
    else:
        echo_lines(*render.lr_range(result))
    if study_name:
        figure = lr_range_figure(
            result, f"{option['model']}, {option['optimizer']}, batch {option['batch_size']}"
        )
        echo_lines(
            *render.attached(
                "LR range test",
                attach_figure(storage, study_name, figure, "lr-find.png", artifacts),
            )
        )


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
    """Estimate the gradient noise scale B_simple, which predicts the critical batch size."""
    from batchlr.studies import render
    from batchlr.studies.results import attach_figure, noise_scale_figure
    from batchlr.studies.run import run_noise_scale

    _check_study(storage, study_name)
    result = run_noise_scale(**option)
    click.echo(
        json_text(render.noise_scale_record(result))
        if as_json
        else "\n".join(render.noise_scale(result, option["epochs"]))
    )
    if study_name:
        when = f"after {option['epochs']} epochs" if option["epochs"] else "at initialisation"
        figure = noise_scale_figure(result, f"{option['model']}, {when}")
        echo_lines(
            *render.attached(
                "noise-scale curve",
                attach_figure(storage, study_name, figure, "noise-scale.png", artifacts),
            )
        )


def _check_study(storage: str, study_name: str | None) -> None:
    """Fail before minutes of probing when the study to attach to does not exist."""
    if study_name:
        from batchlr.studies.store import load_existing_study, open_storage

        load_existing_study(open_storage(storage, access="read"), study_name)
