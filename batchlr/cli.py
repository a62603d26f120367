"""The ``batchlr`` command line.

Heavy imports (torch, scikit-learn) happen inside the commands that need them, so that
``batchlr --help`` and ``batchlr studies`` answer at once.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from optuna.trial import TrialState

from batchlr import __version__
from batchlr.errors import BatchlrError, BatchlrUsageError
from batchlr.objectives.schedules import SCHEDULE_NAMES
from batchlr.search import PRUNER_NAMES, SAMPLER_NAMES
from batchlr.search.space import (
    DEFAULT_REFERENCE_BATCH_SIZE,
    LR_SCALING_RULES,
    OPTIMIZER_NAMES,
    LrScaling,
    SearchSpace,
    parse_optimizers,
    parse_range,
)
from batchlr.studies.storage import DEFAULT_STORAGE, STORAGE_ENV, mask_url

DEFAULT_N_TRIALS = 20
STORAGE_OPTION = click.option(
    "--storage",
    envvar=STORAGE_ENV,
    default=DEFAULT_STORAGE,
    show_default=True,
    show_envvar=True,
    help="Optuna storage URL: sqlite:///FILE or postgresql://USER@HOST/DB.",
)


class BatchlrGroup(click.Group):
    """Turns :class:`BatchlrError` into one line and an exit code; ``--debug`` shows tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # A reader such as `head` closed our output: stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        except Exception as error:
            if ctx.meta.get("batchlr.debug"):
                raise
            if isinstance(error, BatchlrUsageError):
                raise click.UsageError(str(error)) from None
            if isinstance(error, BatchlrError):
                raise click.ClickException(str(error)) from None
            raise click.ClickException(
                f"unexpected {type(error).__name__}: {error} (run with --debug for the traceback)"
            ) from None


@click.group(cls=BatchlrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchlr")
@click.option("--debug", is_flag=True, help="Show the traceback of any error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Search batch size, learning rate and optimizer for a CNN with k-fold cross-validation."""
    import optuna

    ctx.meta["batchlr.debug"] = debug
    # batchlr prints one line per trial itself.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


class RangeParam(click.ParamType):
    """``MIN:MAX`` of ints or floats."""

    name = "min:max"

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        if isinstance(value, tuple):
            return value
        try:
            return parse_range(str(value), self.kind)
        except BatchlrError as error:
            self.fail(str(error), param, ctx)


class MicroBatchParam(click.ParamType):
    """A positive int, or ``auto``."""

    name = "n|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if value == "auto" or isinstance(value, int) and value > 0:
            return value
        try:
            if int(value) > 0:
                return int(value)
        except ValueError:
            pass
        self.fail(f"{value!r} is neither a positive number nor auto", param, ctx)


class OptimizersParam(click.ParamType):
    """Comma-separated optimizer names."""

    name = "names"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_optimizers(str(value))
        except BatchlrError as error:
            self.fail(str(error), param, ctx)


@main.command()
@click.option("--study", "study_name", help="Study name.  [default: DATASET-MODEL]")
@STORAGE_OPTION
@click.option("--dataset", default="digits", show_default=True, help="digits, mnist, fashion-mnist, cifar10, cifar2 or imagefolder:PATH.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    envvar="BATCHLR_DATA_DIR",
    show_envvar=True,
    help="Where torchvision data sets are read from, or downloaded to.",
)
@click.option("--model", default="convnet", show_default=True, help="convnet, convnet-bn, or package.module:function.")
@click.option("--folds", type=click.IntRange(min=2), default=3, show_default=True, help="Cross-validation folds.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Epochs per fold.")
@click.option("--batch-size", default="16:512", show_default=True, type=RangeParam(int), help="MIN:MAX, sampled on a log scale; MAX is capped at the smallest training fold.")
@click.option("--lr", default="1e-4:1", show_default=True, type=RangeParam(float), help="MIN:MAX learning rate, sampled on a log scale.")
@click.option("--optimizers", default=",".join(OPTIMIZER_NAMES), show_default=True, type=OptimizersParam(), help="Comma-separated subset of sgd,adam,rmsprop.")
@click.option("--lr-scaling", type=click.Choice(LR_SCALING_RULES), default="none", show_default=True, help="Search base_lr and train with lr = base_lr*B/B0 (linear) or base_lr*sqrt(B/B0).")
@click.option("--reference-batch-size", type=click.IntRange(min=1), default=DEFAULT_REFERENCE_BATCH_SIZE, show_default=True, help="B0 of --lr-scaling.")
@click.option("--warmup", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Epochs of linear learning-rate warmup.")
@click.option("--schedule", type=click.Choice(SCHEDULE_NAMES), default="constant", show_default=True, help="Learning-rate schedule over each fold's steps.")
@click.option("--budget", type=click.Choice(["epochs", "steps"]), default="epochs", show_default=True, help="Train each fold for --epochs epochs, or for --steps optimizer steps.")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps per fold under --budget steps.")
@click.option("--max-micro-batch", type=MicroBatchParam(), help="Most samples per forward/backward pass; larger batches accumulate gradients. 'auto' probes the GPU once per study.")
@click.option("--objectives", type=click.Choice(["accuracy", "accuracy,time"]), default="accuracy", show_default=True, help="accuracy,time also minimises training seconds (a Pareto front; no pruning).")
@click.option("--n-trials", type=click.IntRange(min=1), help=f"Trials to run in this process.  [default: {DEFAULT_N_TRIALS}, or unlimited with --timeout]")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop starting new trials after SEC seconds.")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="tpe", show_default=True)
@click.option("--pruner", type=click.Choice(PRUNER_NAMES), default="median", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the sampler and model initialisation; a new study's folds too.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.pass_context
def run(
    ctx: click.Context,
    study_name: str | None,
    storage: str,
    dataset: str,
    data_dir: Path,
    model: str,
    folds: int,
    epochs: int,
    batch_size: tuple[int, int],
    lr: tuple[float, float],
    optimizers: tuple[str, ...],
    lr_scaling: str,
    reference_batch_size: int,
    warmup: float,
    schedule: str,
    budget: str,
    steps: int | None,
    max_micro_batch: int | str | None,
    objectives: str,
    n_trials: int | None,
    timeout: float | None,
    sampler: str,
    pruner: str,
    seed: int,
    device: str,
) -> None:
    """Create a study, or resume the one named --study, and run trials in this process.

    A resumed study keeps the data set, model, folds, epochs and search space it was created
    with; giving a different value for any of them is an error.
    """
    from batchlr.objectives.data import check_dataset_name
    from batchlr.objectives.models import resolve_model
    from batchlr.studies.lifecycle import RunOptions, open_study
    from batchlr.studies.spec import OPTION_OF, StudySpec

    check_dataset_name(dataset)
    resolve_model(model)
    requested = StudySpec(
        dataset=dataset,
        model=model,
        folds=folds,
        epochs=epochs,
        space=SearchSpace(
            batch_size=batch_size, lr=lr, optimizers=optimizers, lr_scaling=LrScaling(lr_scaling, reference_batch_size)
        ),
        seed=seed,
        budget=budget,
        steps=steps,
        schedule=schedule,
        warmup=warmup,
        objectives=tuple(objectives.split(",")),
    )
    given = {key for key in OPTION_OF if ctx.get_parameter_source(key) != ParameterSource.DEFAULT}
    options = RunOptions(
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        device=device,
        data_dir=data_dir,
        max_micro_batch=max_micro_batch,
    )
    opened = open_study(storage, study_name, requested, given, options)
    spec, objective = opened.spec, opened.objective
    state = f"resuming, {opened.previous_trials} trials so far" if opened.previous_trials else "new"
    click.echo(f"study {opened.study.study_name} ({state}) in {mask_url(storage)}")
    click.echo(
        f"  {spec.dataset}, {spec.model}, {spec.folds} folds x {_budget_text(spec)} on {objective.device}; "
        f"batch_size {objective.space.batch_size[0]}:{objective.space.batch_size[1]}, "
        f"{objective.space.lr_param} {_format(spec.space.lr[0])}:{_format(spec.space.lr[1])}, {','.join(spec.space.optimizers)}"
    )
    opened.optimize(n_trials if n_trials or timeout else DEFAULT_N_TRIALS, timeout, callbacks=[_print_trial])
    _print_best(opened.study, storage)


def _budget_text(spec: Any) -> str:
    budget = f"{spec.steps} steps" if spec.budget == "steps" else f"{spec.epochs} epochs"
    extras = [f"lr x B/{spec.space.lr_scaling.reference_batch_size} ({spec.space.lr_scaling.rule})"] if spec.space.lr_scaling.rule != "none" else []
    extras += [f"{spec.schedule} schedule"] if spec.schedule != "constant" else []
    extras += [f"{spec.warmup:g} warmup epochs"] if spec.warmup else []
    return ", ".join([budget, *extras])


def _print_trial(study: Any, trial: Any) -> None:
    value = f"{trial.values[0]:.4f}" if trial.values else ""
    params = " ".join(f"{key}={_format(value)}" for key, value in sorted(trial.params.items()))
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    reason = trial.user_attrs.get("reason", "")
    click.echo(f"trial {trial.number:>4}  {trial.state.name.lower():<8} {value:<7} {seconds:6.1f}s  {params}  {reason}".rstrip())


def _print_best(study: Any, storage: str) -> None:
    from batchlr.studies.summary import best_complete_trial, pareto_trials

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        click.echo("no trial has completed yet: every one was pruned or failed; run more, or widen the ranges")
        return
    best = best_complete_trial(study)
    params = " ".join(f"{key}={_format(value)}" for key, value in sorted(best.params.items()))
    click.echo(f"best: trial {best.number}, accuracy {best.values[0]:.4f}, {params}")
    if len(study.directions) > 1:
        front = ", ".join(f"{t.number} ({t.values[0]:.3f}, {t.values[1]:.1f} s)" for t in pareto_trials(study))
        click.echo(f"accuracy/time Pareto front: {front}")
    where = f" --storage {mask_url(storage)}" if storage != DEFAULT_STORAGE else ""
    click.echo(f"see it:    batchlr show {study.study_name}{where}")
    click.echo(f"export it: batchlr export {study.study_name}{where} --output best.json")
    click.echo(f"browse it: batchlr dashboard{where}")


def _format(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@main.command()
@STORAGE_OPTION
def studies(storage: str) -> None:
    """List the studies in a storage: trials by state and best value."""
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import list_studies

    rows = list_studies(open_storage(storage, create=False))
    if not rows:
        click.echo("no studies")
        return
    width = max(len("study"), *(len(row.name) for row in rows))
    click.echo(f"{'study':<{width}}  complete  pruned  fail  running  best")
    for row in rows:
        counts = row.trials_by_state
        best = "-" if row.best_value is None else f"{row.best_value:.4f}"
        click.echo(
            f"{row.name:<{width}}  {counts['COMPLETE']:>8}  {counts['PRUNED']:>6}  {counts['FAIL']:>4}  {counts['RUNNING']:>7}  {best}"
        )


@main.command()
@click.argument("study_name", metavar="STUDY")
@STORAGE_OPTION
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows in the table of best trials.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(study_name: str, storage: str, top: int, as_json: bool) -> None:
    """Print a study's best trial and its top trials."""
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import describe, load_existing_study

    report = describe(load_existing_study(open_storage(storage, create=False), study_name), top)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    settings = report["settings"]
    budget = f"{settings.get('steps')} steps" if settings.get("budget") == "steps" else f"{settings.get('epochs')} epochs"
    click.echo(
        f"study {report['study']}: {settings.get('dataset')} / {settings.get('model')}, "
        f"{settings.get('folds')} folds x {budget}; trials "
        + ", ".join(f"{count} {state.lower()}" for state, count in sorted(report["trials_by_state"].items()))
    )
    best = report["best"]
    click.echo(f"best trial {best['number']}: accuracy {best['value']:.4f}, folds {_fold_text(best)}")
    for key, value in sorted(best["params"].items()):
        click.echo(f"  {key:<12} {_format(value)}")
    click.echo(f"\ntop {len(report['top'])} by accuracy:")
    _print_trial_table(report["top"])
    if report["pareto"]:
        click.echo(f"\naccuracy/time Pareto front ({len(report['pareto'])} trials):")
        _print_trial_table(report["pareto"])


def _print_trial_table(rows: list[dict[str, Any]]) -> None:
    click.echo(f"{'trial':>5}  {'accuracy':>8}  {'seconds':>7}  {'batch':>5}  {'lr':>9}  {'optimizer':<9}  {'momentum':>8}  {'img/s':>7}")
    for row in rows:
        params, attrs = row["params"], row["user_attrs"]
        momentum = params.get("momentum")
        click.echo(
            f"{row['number']:>5}  {row['value']:>8.4f}  {attrs.get('train_seconds', math.nan):>7.1f}  "
            f"{params.get('batch_size', '-'):>5}  {attrs.get('lr', math.nan):>9.3g}  "
            f"{params.get('optimizer', '-'):<9}  {'-' if momentum is None else f'{momentum:.3f}':>8}  "
            f"{attrs.get('images_per_second', math.nan):>7.0f}"
        )


def _fold_text(trial: dict[str, Any]) -> str:
    return " ".join(f"{score:.4f}" for score in trial["user_attrs"].get("fold_scores", [])) or "-"


@main.command()
@click.argument("study_name", metavar="STUDY")
@click.argument("delta", metavar="[DELTA]", type=click.FloatRange(min=0), required=False)
@STORAGE_OPTION
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write: .json, or .yaml/.yml.")
@click.option(
    "--pick",
    type=click.Choice(["best", "fastest-within"]),
    default="best",
    show_default=True,
    help="best: the most accurate trial; fastest-within DELTA: the fastest trial within DELTA accuracy of it.",
)
def export(study_name: str, delta: float | None, storage: str, output: Path, pick: str) -> None:
    """Write a study's best configuration for use with batchlr.load_config.

    \b
    batchlr export STUDY --output best.json
    batchlr export STUDY --pick fastest-within 0.01 --output fast.yaml
    """
    from batchlr.studies.export import trial_config, write_config
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import best_complete_trial, fastest_within, load_existing_study

    if (pick == "fastest-within") != (delta is not None):
        raise click.UsageError("give DELTA exactly with --pick fastest-within, e.g. --pick fastest-within 0.01")
    study = load_existing_study(open_storage(storage, create=False), study_name)
    trial = fastest_within(study, delta) if delta is not None else best_complete_trial(study)
    config = trial_config(study, trial)
    write_config(config, output)
    seconds = "" if config.train_seconds is None else f", {config.train_seconds:.1f} s training"
    click.echo(
        f"wrote {output}: trial {config.trial}, accuracy {config.value:.4f}{seconds}, "
        f"batch_size={config.batch_size} lr={config.lr:.3g} optimizer={config.optimizer}"
    )


@main.command()
@STORAGE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to serve on; 0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(storage: str, host: str, port: int) -> None:
    """Serve the storage's studies in optuna-dashboard."""
    from batchlr.studies.dashboard import serve_dashboard

    click.echo(f"optuna-dashboard for {mask_url(storage)} at http://{host}:{port}/ (Ctrl-C stops it)")
    serve_dashboard(storage, host, port)

