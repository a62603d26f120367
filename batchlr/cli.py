"""The ``batchlr`` command line: click wiring only.

Each command parses its options, calls one function of :mod:`batchlr.studies` and prints
what it returns through :mod:`batchlr.studies.render`. Heavy imports (torch, scikit-learn)
happen inside the commands that need them, so that ``batchlr --help`` answers at once.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batchlr import __version__
from batchlr.cli_options import (
    ARTIFACTS_OPTION,
    ATTACH_OPTIONS,
    AUGMENT,
    BATCH_OPTION,
    BATCH_RANGE,
    CACHE_DIR_OPTION,
    DATA_DIR_OPTION,
    DATA_OPTIONS,
    DATASET_OPTION,
    DEVICE_OPTION,
    GRID_POINTS,
    JSON_OPTION,
    LR_RANGE,
    MAX_EPOCHS,
    MAX_HEARTBEAT,
    MICRO_BATCH,
    MODEL_FILE_ARGUMENT,
    MOMENTUM_OPTION,
    OBJECTIVES,
    OPTIMIZER_OPTION,
    OPTIMIZERS,
    SEED_OPTION,
    STORAGE_OPTION,
    STUDY_ARGUMENT,
    STUDY_NAME,
    TRUST_CODE_OPTION,
    WEIGHT_DECAY,
    FiniteFloatRange,
    file_over_environment,
    given,
    output_option,
    read_config_file,
)
from batchlr.errors import ERROR_PREFIX, BatchlrError, BatchlrUsageError, Interrupted
from batchlr.json_text import json_text
from batchlr.objectives.schedules import SCHEDULE_NAMES
from batchlr.objectives.settings import FUSE_CHOICES, PRECISIONS
from batchlr.search import PRUNER_NAMES, SAMPLER_NAMES
from batchlr.search.space import (
    DEFAULT_OPTIMIZERS,
    DEFAULT_REFERENCE_BATCH_SIZE,
    LR_SCALING_RULES,
    MAX_LR,
    OPTIMIZER_NAMES,
)
from batchlr.studies.storage import (
    DEFAULT_HEARTBEAT,
    FAULT_REMEDY,
    RETRY_REMEDY,
    STORAGE_ENV,
    mask_command_line,
    mask_url,
    redact,
    remember_secrets,
    storage_fault,
)

if TYPE_CHECKING:
    from batchlr.studies.progress import Mode


class BatchlrGroup(click.Group):
    """Turns :class:`BatchlrError` into one line and its exit code; ``--debug`` shows tracebacks."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Keep the arguments as given: the study note records them, and --workers passes them on."""
        arguments = list(args)
        for text in (*arguments, os.environ.get(STORAGE_ENV, "")):
            remember_secrets(text)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta["batchlr.arguments"] = ["batchlr", *arguments]
        return ctx

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Print every error as the single line ``Error: ...``, without click's usage block."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if isinstance(sys.stdout, io.TextIOWrapper):
            # A file or class name need not be UTF-8 (Python escapes its odd bytes as surrogates):
            # print its bytes as they are, as `ls` does, rather than fail under a strict locale.
            sys.stdout.reconfigure(errors="surrogateescape")
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:
            click.echo(f"{ERROR_PREFIX}{redact(error.format_message())}", err=True)
            code = error.exit_code
        except click.Abort:
            # Ctrl-C before a run's trials take signals over, or in any other command: nothing
            # was half written (files and studies are written whole), so it can simply be rerun.
            click.echo(f"{ERROR_PREFIX}interrupted; run the same command again", err=True)
            code = Interrupted.exit_code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # A reader such as `head` closed our output: stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except SystemExit as error:
            # batchlr raises errors, it never exits inside a command: this is a model's code
            # (a --model function, a trusted model file's), and its status would hide the failure.
            if ctx.meta.get("batchlr.debug"):
                raise
            raise click.ClickException(
                f"a model's code called exit({error.code!r}); a model function must return a torch.nn.Module and "
                "its forward pass return logits or raise (run with --debug for the traceback)"
            ) from None
        except Exception as error:
            if ctx.meta.get("batchlr.debug"):
                raise
            if not isinstance(error, BatchlrError):
                remedy = FAULT_REMEDY if ctx.invoked_subcommand == "run" else RETRY_REMEDY
                error = storage_fault(error, ctx.meta.get("batchlr.storage", ""), remedy) or error
            if isinstance(error, BatchlrUsageError):
                raise click.UsageError(str(error)) from None
            if isinstance(error, BatchlrError):
                failure = click.ClickException(str(error))
                # click types exit_code as a ClassVar, yet reads it from the exception it catches
                failure.exit_code = error.exit_code  # type: ignore[misc]
                raise failure from None
            raise click.ClickException(
                f"unexpected {type(error).__name__}: {error} (run with --debug for the traceback)"
            ) from None


@click.group(
    cls=BatchlrGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.version_option(__version__, prog_name="batchlr")
@click.option("--debug", is_flag=True, help="Show the traceback of any error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Search batch size, learning rate and optimizer for a CNN with k-fold cross-validation."""
    import optuna

    ctx.meta["batchlr.debug"] = debug
    # batchlr prints one line per trial and one per error itself; Optuna's own log (a traceback
    # for every failed or interrupted trial) is for --debug.
    optuna.logging.set_verbosity(optuna.logging.WARNING if debug else optuna.logging.ERROR)


@main.command()
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
@click.option("--folds", type=click.IntRange(2, 100), default=3, help="Cross-validation folds.")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=10, help="Epochs per fold.")
@click.option(
    "--batch-size",
    default="16:512",
    type=BATCH_RANGE,
    help="MIN:MAX, sampled on a log scale; MAX is capped at the smallest training fold.",
)
@click.option(
    "--lr",
    default="1e-4:1",
    type=LR_RANGE,
    help=(
        "MIN:MAX learning rate (base_lr under --lr-scaling), log scale; auto: one decade either "
        "side of the LR range test's suggestion."
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
    type=FiniteFloatRange(0, 1, max_open=True),
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
    type=click.IntRange(min=1),
    help="Pixels of reflection padding before --augment crop.  [default: an eighth of the image side, 4 for 32x32]",
)
@click.option(
    "--lr-scaling",
    type=click.Choice(LR_SCALING_RULES),
    default="none",
    help="Search base_lr and train with lr = base_lr*B/B0 (linear) or base_lr*sqrt(B/B0).",
)
@click.option(
    "--reference-batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_REFERENCE_BATCH_SIZE,
    help="B0 of --lr-scaling.",
)
@click.option(
    "--warmup",
    type=FiniteFloatRange(0, MAX_EPOCHS),
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
    type=click.Choice(["epochs", "steps"]),
    help=(
        "Train each fold for --epochs epochs, or for --steps optimizer steps.  "
        "[default: epochs, or steps with --steps]"
    ),
)
@click.option(
    "--steps",
    type=click.IntRange(1, MAX_EPOCHS * 10_000),
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
    "--quiet", "-q", is_flag=True, help="Print only the outcome, no progress or per-trial lines."
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLER_NAMES),
    default="tpe",
    help="tpe, gp (Gaussian process), random, or grid (powers of two x decades of lr, or --grid-points).",
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
    default="median",
    help="median, hyperband, wilcoxon (paired test against the best trial) or none.",
)
@click.pass_context
def run(ctx: click.Context, /, study_name: str | None, **option: Any) -> None:
    """Create a study, or resume the one named --study, and run trials in this process.

    A resumed study keeps the data set, model, folds, budget, schedule and search space it
    was created with; giving a different value for any of them is an error. It also keeps
    its sampler, pruner, data dir and micro-batch cap unless this run gives them.
    """
    from batchlr.studies import render
    from batchlr.studies.lifecycle import RunOptions, TrialPlan, open_study, run_trials
    from batchlr.studies.spec import StudySpec
    from batchlr.studies.workers import watch_parent, worker_arguments

    worker = watch_parent()
    option = file_over_environment(ctx, option)
    lr_auto = option["lr"] == "auto"
    settings = {
        key: value
        for key, value in option.items()
        if not (lr_auto and key == "lr") and key not in ("fuse_folds", "compile_model")
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
        _echo(*opened.opening(mask_url(option["storage"]), plan))
    run_trials(opened, plan, options)
    if not worker:
        click.echo(render.outcome(opened.study, option["storage"]))


def _echo(lines: list[str], warning: str | None = None) -> None:
    click.echo("\n".join(lines))
    if warning:
        click.echo(warning, err=True)


@main.command()
@STORAGE_OPTION
def studies(storage: str) -> None:
    """List the studies in a storage: trials by state and best value."""
    from batchlr.studies import render
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import list_studies

    click.echo(render.studies_table(list_studies(open_storage(storage, access="read"))))


@main.command()
@STUDY_ARGUMENT
@STORAGE_OPTION
@click.option(
    "--top", type=click.IntRange(min=1), default=5, help="Rows in the table of best trials."
)
@JSON_OPTION
@click.option(
    "--as-config",
    is_flag=True,
    help="Print the TOML study file that reproduces the study (for run --config).",
)
def show(study_name: str, storage: str, top: int, as_json: bool, as_config: bool) -> None:
    """Print a study's best trial and its top trials."""
    from batchlr.studies import render
    from batchlr.studies.config import render_run_config
    from batchlr.studies.spec import study_spec
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import describe, load_existing_study

    study = load_existing_study(open_storage(storage, access="read"), study_name)
    if as_config:
        click.echo(
            render_run_config(study.study_name, mask_url(storage), study_spec(study)), nl=False
        )
        return
    report = describe(study, top)
    click.echo(json_text(report.to_json(), indent=2) if as_json else render.study_report(report))


@main.command()
@STUDY_ARGUMENT
@click.argument("delta", metavar="[DELTA]", type=FiniteFloatRange(min=0), required=False)
@STORAGE_OPTION
@output_option("File to write: .json, or .yaml/.yml.")
@click.option(
    "--format",
    "language",
    type=click.Choice(["json", "yaml"]),
    help="File format.  [default: by the --output suffix]",
)
@click.option(
    "--pick",
    type=click.Choice(["best", "fastest-within"]),
    default="best",
    help="best: the most accurate trial; fastest-within DELTA: the fastest trial within DELTA accuracy of it.",
)
def export(
    study_name: str,
    delta: float | None,
    storage: str,
    output: Path,
    language: str | None,
    pick: str,
) -> None:
    """Write a study's best configuration for use with batchlr.load_config.

    \b
    batchlr export STUDY --output best.json
    batchlr export STUDY --pick fastest-within 0.01 --output fast.yaml
    """
    from batchlr.studies import render
    from batchlr.studies.export import export_trial

    if (pick == "fastest-within") != (delta is not None):
        raise click.UsageError(
            "give DELTA exactly with --pick fastest-within, e.g. --pick fastest-within 0.01"
        )
    click.echo(render.exported(output, export_trial(storage, study_name, output, delta, language)))


@main.command("lr-find")
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
    from batchlr.studies.artifacts import attach_figure
    from batchlr.studies.figures import lr_range_figure
    from batchlr.studies.probes import run_lr_find

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
        _echo(*render.lr_range(result))
    if study_name:
        figure = lr_range_figure(
            result, f"{option['model']}, {option['optimizer']}, batch {option['batch_size']}"
        )
        _echo(
            *render.attached(
                "LR range test",
                attach_figure(storage, study_name, figure, "lr-find.png", artifacts),
            )
        )


@main.command("noise-scale")
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
    from batchlr.studies.artifacts import attach_figure
    from batchlr.studies.figures import noise_scale_figure
    from batchlr.studies.probes import run_noise_scale

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
        _echo(
            *render.attached(
                "noise-scale curve",
                attach_figure(storage, study_name, figure, "noise-scale.png", artifacts),
            )
        )


def _check_study(storage: str, study_name: str | None) -> None:
    """Fail before minutes of probing when the study to attach to does not exist."""
    if study_name:
        from batchlr.studies.storage import open_storage
        from batchlr.studies.summary import load_existing_study

        load_existing_study(open_storage(storage, access="read"), study_name)


@main.command()
@STUDY_ARGUMENT
@STORAGE_OPTION
@output_option(
    "Where to save the model file (weights, classes, preprocessing; batchlr.load_model reads it)."
)
@DATA_DIR_OPTION
@CACHE_DIR_OPTION
@DEVICE_OPTION
@SEED_OPTION
@ARTIFACTS_OPTION
@click.pass_context
def refit(
    ctx: click.Context,
    study_name: str,
    storage: str,
    output: Path,
    data_dir: Path,
    cache_dir: Path | None,
    device: str,
    seed: int,
    artifacts: Path | None,
) -> None:
    """Retrain the best configuration on all training data and score it on data the search never saw."""
    from batchlr.studies import render
    from batchlr.studies.lifecycle import RunOptions
    from batchlr.studies.refit import refit_best

    given_dir = data_dir if given(ctx, ["data_dir"]) else None
    _echo(
        *render.refitted(
            refit_best(
                storage,
                study_name,
                output,
                RunOptions(seed, device, heartbeat=None, cache_dir=cache_dir),
                given_dir,
                artifacts,
            ),
            output,
        )
    )


@main.command()
@MODEL_FILE_ARGUMENT
@DATASET_OPTION
@DATA_DIR_OPTION
@CACHE_DIR_OPTION
@DEVICE_OPTION
@TRUST_CODE_OPTION
@JSON_OPTION
def evaluate(
    model_file: Path,
    dataset: str,
    data_dir: Path,
    cache_dir: Path | None,
    device: str,
    trust_code: bool,
    as_json: bool,
) -> None:
    """Score a model file written by refit on a data set: its official test split where it has
    one; else, on the data set the model trained on, the hold-out its study set aside; else
    all its images; resized as the model was trained.

    \b
    batchlr evaluate model.pt --dataset imagefolder:photos/val
    """
    from batchlr.objectives.device import resolve_device
    from batchlr.studies import render
    from batchlr.studies.inference import evaluate_model, evaluation_data
    from batchlr.studies.model_file import load_model

    model = load_model(model_file, resolve_device(device), trust_code)
    result = evaluate_model(model, evaluation_data(model, dataset, data_dir, cache_dir), dataset)
    _echo(
        [json_text(result.to_dict(), indent=2) if as_json else render.evaluated(result)],
        result.note,
    )


@main.command()
@MODEL_FILE_ARGUMENT
@click.argument(
    "images", metavar="IMAGE_OR_FOLDER...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option("--top-k", type=click.IntRange(min=1), default=3, help="Classes to show per image.")
@DEVICE_OPTION
@TRUST_CODE_OPTION
@JSON_OPTION
def predict(
    model_file: Path,
    images: tuple[Path, ...],
    top_k: int,
    device: str,
    trust_code: bool,
    as_json: bool,
) -> None:
    """Print the most probable classes of images (of any size: resized as the model was trained),
    and of the images in folders.

    \b
    batchlr predict model.pt cat.png dog.jpg photos/
    """
    from batchlr.objectives.device import resolve_device
    from batchlr.studies import render
    from batchlr.studies.inference import image_paths
    from batchlr.studies.inference import predict as predict_images
    from batchlr.studies.model_file import load_model

    results = predict_images(
        load_model(model_file, resolve_device(device), trust_code), image_paths(list(images)), top_k
    )
    click.echo(
        json_text(
            [
                {
                    "path": result.path,
                    "top": [{"class": name, "probability": p} for name, p in result.top],
                }
                for result in results
            ],
            indent=2,
        )
        if as_json
        else render.predictions(results)
    )


@main.command()
@STUDY_ARGUMENT
@STORAGE_OPTION
@output_option("Directory for index.html and the PNGs.", directory=True)
@ARTIFACTS_OPTION
def report(study_name: str, storage: str, output: Path, artifacts: Path | None) -> None:
    """Write a static HTML report of a study, with PNG copies of its plots, and attach them to
    the study's artifacts."""
    from batchlr.studies import render
    from batchlr.studies.report import write_study_report

    files, attached = write_study_report(storage, study_name, output, artifacts)
    _echo(*render.report_written(files, output, attached))


@main.command()
@STORAGE_OPTION
@click.option(
    "--host", default="127.0.0.1", help="Interface to serve on; 0.0.0.0 exposes it to the network."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, help="Port to serve on.")
@ARTIFACTS_OPTION
def dashboard(storage: str, host: str, port: int, artifacts: Path | None) -> None:
    """Serve the storage's studies, and the files attached to them, in optuna-dashboard."""
    from batchlr.studies import render
    from batchlr.studies.dashboard import serve_dashboard

    serve_dashboard(
        storage,
        host,
        port,
        lambda: _echo(*render.dashboard_address(mask_url(storage), host, port)),
        artifacts,
    )
