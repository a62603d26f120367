"""``batchlr run``: its options, and the study run they describe."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchlr.cli_group import echo_lines
from batchlr.cli_options import (
    AUGMENT,
    BATCH_RANGE,
    DATA_OPTIONS,
    GRID_POINTS,
    LR_RANGE,
    MAX_HEARTBEAT,
    MICRO_BATCH,
    OBJECTIVES,
    OPTIMIZERS,
    STORAGE_OPTION,
    STUDY_NAME,
    WEIGHT_DECAY,
    FiniteFloatRange,
    file_over_environment,
    given,
    read_config_file,
)
from batchlr.objectives.schedules import SCHEDULE_NAMES
from batchlr.objectives.settings import BUDGET_KINDS, FUSE_CHOICES, PRECISIONS
from batchlr.search import PRUNER_NAMES, SAMPLER_NAMES
from batchlr.search.lr_scaling import DEFAULT_REFERENCE_BATCH_SIZE, LR_SCALING_RULES
from batchlr.search.space import (
    DEFAULT_OPTIMIZERS,
    OPTIMIZER_NAMES,
)
from batchlr.studies.store import (
    DEFAULT_HEARTBEAT,
    mask_command_line,
    mask_url,
)

if TYPE_CHECKING:
    from batchlr.studies.run import Mode


@click.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=read_config_file,
    help="TOML file of run options (keys with underscores); flags override it.",
)
@click.option(
    "--study", "study_name", type=STUDY_NAME, help="Study name.  [default: DATASET-MODEL]"
)
@STORAGE_OPTION
@DATA_OPTIONS
@click.option("--folds", type=int, default=3, help="Cross-validation folds, 2 to 100.")
@click.option("--epochs", type=int, default=10, help="Epochs per fold.")
@click.option(
    "--batch-size",
    default="16:512",
    type=BATCH_RANGE,
    help="MIN:MAX, sampled on a log scale; MAX is capped at the smallest training fold.",
)
@click.option(
    "--lr",
    type=LR_RANGE,
    help=(
        "MIN:MAX learning rate (base_lr under --lr-scaling), log scale, for every optimizer; "
        "auto: for each optimizer, from a 30th of its LR range test's suggestion to 3 times it.  "
        "[default: each optimizer its own: sgd 1e-3:1, adam, adamw and rmsprop 1e-5:0.1]"
    ),
)
@click.option(
    "--optimizers",
    default=",".join(DEFAULT_OPTIMIZERS),
    type=OPTIMIZERS,
    help=f"Comma-separated subset of {','.join(OPTIMIZER_NAMES)}.",
)
@click.option(
    "--weight-decay",
    default="0",
    type=WEIGHT_DECAY,
    help="W for every trial, or MIN:MAX searched on a log scale (param weight_decay); decoupled under adamw.",
)
@click.option(
    "--try-no-weight-decay",
    is_flag=True,
    help="With --weight-decay MIN:MAX, also try none (param use_weight_decay).",
)
@click.option("--nesterov", is_flag=True, help="Nesterov momentum for sgd.")
@click.option(
    "--label-smoothing",
    type=float,
    default=0.0,
    help="Label smoothing of the training loss.",
)
@click.option(
    "--augment",
    default="none",
    type=AUGMENT,
    help=(
        "Augment training batches on the device: random horizontal flips, random crops after "
        "reflection padding, or both."
    ),
)
@click.option(
    "--crop-padding",
    type=int,
    help="Pixels of reflection padding before --augment crop.  [default: an eighth of the image side, 4 for 32x32]",
)
@click.option(
    "--lr-scaling",
    type=click.Choice(LR_SCALING_RULES),
    default="none",
    help=(
        "Search base_lr and train with lr = base_lr*B/B0 (linear), base_lr*sqrt(B/B0), or "
        "base_lr times the AdaScale gain of the gradient noise scale measured when the study "
        "is created (noise; its square root for adam, rmsprop and adamw)."
    ),
)
@click.option(
    "--reference-batch-size",
    type=int,
    default=DEFAULT_REFERENCE_BATCH_SIZE,
    help="B0 of --lr-scaling.",
)
@click.option(
    "--warmup",
    type=float,
    default=0.0,
    help="Epochs of linear learning-rate warmup.",
)
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULE_NAMES),
    default="constant",
    help="Learning-rate schedule over each fold's steps.",
)
@click.option(
    "--budget",
    type=click.Choice(BUDGET_KINDS),
    help=(
        "Train each fold for --epochs epochs, or for --steps optimizer steps.  "
        "[default: epochs, or steps with --steps]"
    ),
)
@click.option(
    "--steps",
    type=int,
    help="Optimizer steps per fold; implies --budget steps.",
)
@click.option(
    "--max-micro-batch",
    type=MICRO_BATCH,
    help=(
        "Most samples per forward/backward pass; larger batches accumulate gradients. 'auto' "
        "probes the GPU once per study."
    ),
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    help=(
        "Autocast of the forward pass and loss; parameters and optimizer state stay fp32. auto: "
        "bf16 where the device computes it natively (recent GPUs, CPUs with AVX-512 BF16 or AMX), "
        "else fp32."
    ),
)
@click.option(
    "--fuse-folds",
    type=click.Choice(FUSE_CHOICES),
    default="auto",
    help="Train a trial's folds as one fused model (torch.func): one pass for all folds per step. auto: on CUDA only.",
)
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="torch.compile the forward pass (compiling takes seconds to minutes per process).",
)
@click.option(
    "--stop",
    type=click.Choice(["never", "auto"]),
    default="never",
    help=(
        "auto: end the run once 10 finished trials in a row (complete or pruned) failed to beat "
        "the best by more than the standard error of its fold scores (after at least 15 "
        "finished trials); a study where that holds already runs no trial."
    ),
)
@click.option(
    "--objectives",
    type=OBJECTIVES,
    default="accuracy",
    help="accuracy,time also minimises training seconds (a Pareto front; no pruning).",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    help="Trials to run in this process, or in each worker with --workers.  [default: 20, or unlimited with --timeout]",
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0, min_open=True),
    help="Stop starting new trials after SEC seconds.",
)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    help="Stop every worker once the study holds N finished (complete or pruned) trials.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="Local worker processes: one per GPU when several are visible, else sharing the CPU cores.",
)
@click.option(
    "--heartbeat",
    type=click.IntRange(1, MAX_HEARTBEAT),
    default=DEFAULT_HEARTBEAT,
    help=(
        "Seconds between a running trial's heartbeats; a trial silent for twice that is failed and "
        "retried, twice at most."
    ),
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No progress or per-trial lines: the opening, warnings and the outcome only.",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLER_NAMES),
    default="ridge",
    help=(
        "ridge (TPE that draws lrs along the lr ridge: a prior one, then the study's fit), tpe, "
        "gp (Gaussian process), random, or grid (powers of two x decades of lr, or --grid-points)."
    ),
)
@click.option(
    "--grid-points",
    type=GRID_POINTS,
    help=(
        "With --sampler grid: NAME=N log-spaced values from the low to the high end, for lr, "
        "batch_size or weight_decay, e.g. lr=12,batch_size=8.  "
        "[default: decades of lr, powers of two of batch_size]"
    ),
)
@click.option(
    "--pruner",
    type=click.Choice(PRUNER_NAMES),
    default="asha",
    help=(
        "median, asha (asynchronous successive halving), hyperband, wilcoxon (paired test "
        "against the best trial) or none."
    ),
)
@click.pass_context
def run(ctx: click.Context, /, study_name: str | None, **option: Any) -> None:
    """Create a study, or resume the one named --study, and run trials in this process.

    A resumed study keeps the data set, model, folds, budget, schedule and search space it
    was created with; giving a different value for any of them is an error. It also keeps
    its sampler, pruner, data dir and micro-batch cap unless this run gives them.
    """
    from batchlr.studies import render
    from batchlr.studies.run import (
        STOP_MIN_TRIALS,
        RunOptions,
        TrialPlan,
        open_study,
        run_trials,
        watch_parent,
        worker_arguments,
    )
    from batchlr.studies.store import StudySpec

    worker = watch_parent()
    option = file_over_environment(ctx, option)
    lr_auto = option["lr"] == "auto"
    settings = {
        key: value
        for key, value in option.items()
        if not (lr_auto and key == "lr") and key not in ("fuse_folds", "compile_model", "stop")
    }
    arguments = ctx.meta["batchlr.arguments"]
    options = RunOptions(
        option["seed"],
        option["device"],
        lr_auto,
        option["heartbeat"],
        mask_command_line(arguments),
        option["cache_dir"],
        option["fuse_folds"],
        option["compile_model"],
        option["stop"] == "auto",
    )
    opened = open_study(
        option["storage"],
        study_name,
        StudySpec.from_attrs(settings),
        given(ctx, list(settings)),
        options,
    )
    progress: Mode = (
        "quiet" if option["quiet"] or worker else "live" if sys.stdout.isatty() else "lines"
    )
    plan = TrialPlan(
        option["n_trials"],
        option["timeout"],
        option["max_trials"],
        option["workers"],
        tuple(worker_arguments(arguments)),
        progress,
    )
    # The `--workers` process speaks for its workers: one opening, one display, one outcome.
    if not worker:
        echo_lines(*opened.opening(mask_url(option["storage"]), plan))
    done_before = run_trials(opened, plan, options)
    if not worker:
        stop_after = STOP_MIN_TRIALS if options.stop_auto else None
        click.echo(
            render.outcome(
                opened.study, option["storage"], stop_after, opened.previous_trials, done_before
            )
        )
