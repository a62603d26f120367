"""The ``batchlr`` command line.

Heavy imports (torch, scikit-learn) happen inside the commands that need them, so that
``batchlr --help`` and ``batchlr studies`` answer at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

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
from batchlr.studies.storage import DEFAULT_HEARTBEAT, DEFAULT_STORAGE, STORAGE_ENV, mask_command_line, mask_url

DEFAULT_N_TRIALS = 20
MAX_EPOCHS = 10_000
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and scikit-learn accept
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

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        """Keep the arguments as given: the study note records them, and --workers passes them on."""
        arguments = list(args)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta["batchlr.arguments"] = ["batchlr", *arguments]
        return ctx

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Print every error as the single line ``Error: ...``, without click's usage block."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            code = error.exit_code
        except click.Abort:
            click.echo("Aborted.", err=True)
            code = 1
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
    # As under `python -m`: a --model module in the working directory imports without PYTHONPATH.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # batchlr prints one line per trial and one per error itself; Optuna's own log (a traceback
    # for every failed or interrupted trial) is for --debug.
    optuna.logging.set_verbosity(optuna.logging.WARNING if debug else optuna.logging.ERROR)


class ParsedParam(click.ParamType):
    """An option value read by one of batchlr's parse functions, whose errors become click's."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name, self.parse = name, parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):  # already parsed
            return value
        try:
            return self.parse(str(value))
        except BatchlrError as error:
            self.fail(str(error), param, ctx)


def _micro_batch(text: str) -> int | str:
    if text == "auto":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise BatchlrUsageError(f"{text!r} is neither a positive number nor auto")


BATCH_RANGE = ParsedParam("min:max", lambda text: parse_range(text, int))
LR_RANGE = ParsedParam("min:max|auto", lambda text: text if text == "auto" else parse_range(text, float))
OPTIMIZERS = ParsedParam("names", parse_optimizers)
MICRO_BATCH = ParsedParam("n|auto", _micro_batch)


def _data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that choose data, model, device and seed, shared by run, lr-find and noise-scale."""
    options = [
        click.option("--dataset", default="digits", show_default=True, help="digits, mnist, fashion-mnist, cifar10, cifar2 or imagefolder:PATH."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"), show_default=True, envvar="BATCHLR_DATA_DIR", show_envvar=True, help="Where torchvision data sets are read from, or downloaded to."),
        click.option("--model", default="convnet", show_default=True, help="convnet, convnet-bn, or package.module:function."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds model initialisation and shuffles (and a new study's sampler, folds and hold-out)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _read_config_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    """Make a study file's values the defaults of run's other options, so flags still override them."""
    if path is None:
        return
    from batchlr.studies.config import read_run_config

    names = {option.name: option.name for option in ctx.command.params if option.name != "config"} | {"study": "study_name"}
    values = {names[key]: value for key, value in read_run_config(path, names).items()}
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta["batchlr.config"] = values


def _file_over_environment(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with a study file's value wherever only an environment variable set one.

    Click ranks the environment above its default map; batchlr ranks a study file above the
    environment, so that only flags override the file.
    """
    from_file = ctx.meta.get("batchlr.config", {})
    return values | {
        param.name: param.type_cast_value(ctx, from_file[param.name])
        for param in ctx.command.params
        if param.name in from_file and ctx.get_parameter_source(param.name) == ParameterSource.ENVIRONMENT
    }


@main.command()
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), is_eager=True, expose_value=False, callback=_read_config_file, help="TOML file of run options (keys with underscores); flags override it.")
@click.option("--study", "study_name", help="Study name.  [default: DATASET-MODEL]")
@STORAGE_OPTION
@_data_options
@click.option("--folds", type=click.IntRange(2, 100), default=3, show_default=True, help="Cross-validation folds.")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=10, show_default=True, help="Epochs per fold.")
@click.option("--batch-size", default="16:512", show_default=True, type=BATCH_RANGE, help="MIN:MAX, sampled on a log scale; MAX is capped at the smallest training fold.")
@click.option("--lr", default="1e-4:1", show_default=True, type=LR_RANGE, help="MIN:MAX learning rate (base_lr under --lr-scaling), log scale; auto: one decade either side of the LR range test's suggestion.")
@click.option("--optimizers", default=",".join(OPTIMIZER_NAMES), show_default=True, type=OPTIMIZERS, help="Comma-separated subset of sgd,adam,rmsprop.")
@click.option("--lr-scaling", type=click.Choice(LR_SCALING_RULES), default="none", show_default=True, help="Search base_lr and train with lr = base_lr*B/B0 (linear) or base_lr*sqrt(B/B0).")
@click.option("--reference-batch-size", type=click.IntRange(min=1), default=DEFAULT_REFERENCE_BATCH_SIZE, show_default=True, help="B0 of --lr-scaling.")
@click.option("--warmup", type=click.FloatRange(0, MAX_EPOCHS), default=0.0, show_default=True, help="Epochs of linear learning-rate warmup.")
@click.option("--schedule", type=click.Choice(SCHEDULE_NAMES), default="constant", show_default=True, help="Learning-rate schedule over each fold's steps.")
@click.option("--budget", type=click.Choice(["epochs", "steps"]), default="epochs", show_default=True, help="Train each fold for --epochs epochs, or for --steps optimizer steps.")
@click.option("--steps", type=click.IntRange(1, MAX_EPOCHS * 10_000), help="Optimizer steps per fold; implies --budget steps.")
@click.option("--max-micro-batch", type=MICRO_BATCH, help="Most samples per forward/backward pass; larger batches accumulate gradients. 'auto' probes the GPU once per study.")
@click.option("--objectives", type=click.Choice(["accuracy", "accuracy,time"]), default="accuracy", show_default=True, help="accuracy,time also minimises training seconds (a Pareto front; no pruning).")
@click.option("--n-trials", type=click.IntRange(min=1), help=f"Trials to run in this process.  [default: {DEFAULT_N_TRIALS}, or unlimited with --timeout]")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Stop starting new trials after SEC seconds.")
@click.option("--max-trials", type=click.IntRange(min=1), help="Stop every worker once the study holds N finished (complete or pruned) trials.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Local worker processes: one per GPU when several are visible, else sharing the CPU cores.")
@click.option("--heartbeat", type=click.IntRange(min=1), default=DEFAULT_HEARTBEAT, show_default=True, help="Seconds between a running trial's heartbeats; a trial silent for twice that is failed and retried once.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the outcome, no progress or per-trial lines.")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="tpe", show_default=True)
@click.option("--pruner", type=click.Choice(PRUNER_NAMES), default="median", show_default=True)
@click.pass_context
def run(ctx: click.Context, study_name: str | None, **option: Any) -> None:
    """Create a study, or resume the one named --study, and run trials in this process.

    A resumed study keeps the data set, model, folds, budget, schedule and search space it
    was created with; giving a different value for any of them is an error.
    """
    from batchlr.objectives.device import release_memory
    from batchlr.studies.lifecycle import RunOptions, open_study
    from batchlr.studies.spec import OPTION_OF, StudySpec, check_names
    from batchlr.studies.summary import render_outcome
    from batchlr.studies.progress import StudyProgress
    from batchlr.studies.workers import INTERRUPTED_EXIT, run_workers, stop_gracefully_on_signals, worker_arguments

    option = _file_over_environment(ctx, option)
    storage = option.pop("storage")
    if study_name is not None and not study_name.strip():
        raise BatchlrUsageError("--study is empty; give a name, or leave --study out for DATASET-MODEL")
    option["dataset"] = check_names(option["dataset"], option["model"])
    if option["steps"] and ctx.get_parameter_source("budget") == ParameterSource.DEFAULT:
        option["budget"] = "steps"
    lr_auto = option["lr"] == "auto"
    space = SearchSpace(
        batch_size=option["batch_size"],
        lr=SearchSpace.lr if lr_auto else option["lr"],
        optimizers=option["optimizers"],
        lr_scaling=LrScaling(option["lr_scaling"], option["reference_batch_size"]),
    )
    spec_options = ("dataset", "model", "folds", "epochs", "seed", "budget", "steps", "schedule", "warmup")
    requested = StudySpec(space=space, objectives=tuple(option["objectives"].split(",")), **{key: option[key] for key in spec_options})
    given = {key for key in OPTION_OF if ctx.get_parameter_source(key) != ParameterSource.DEFAULT} - ({"lr"} if lr_auto else set())
    command_line = mask_command_line(ctx.meta["batchlr.arguments"])
    run_options = RunOptions(lr_auto=lr_auto, command_line=command_line, **{key: option[key] for key in ("sampler", "pruner", "seed", "device", "data_dir", "max_micro_batch", "heartbeat")})
    opened = open_study(storage, study_name, requested, given, run_options)
    objective = opened.objective
    lines, warning = opened.opening(mask_url(storage))
    click.echo("\n".join(lines))
    if warning:
        click.echo(warning, err=True)
    n_trials, timeout, study = option["n_trials"], option["timeout"], opened.study
    if option["workers"] > 1:
        # Each worker loads its own copy of the data; this process's would sit idle on the GPU.
        device = objective.device
        del opened, objective
        release_memory(device)
        code = run_workers(worker_arguments(ctx.meta["batchlr.arguments"]), option["workers"], option["device"], option["seed"])
        if code:
            raise SystemExit(code)
    else:
        stop_gracefully_on_signals()
        n_trials = n_trials if n_trials or timeout else DEFAULT_N_TRIALS
        mode = "quiet" if option["quiet"] else "live" if sys.stdout.isatty() else "lines"
        rounds = objective.settings.budget.round_count
        try:
            with StudyProgress(mode, n_trials, rounds, objective.folds.k) as progress:
                objective.on_round = progress.on_round
                opened.optimize(n_trials, timeout, [progress.on_trial], option["max_trials"])
        except KeyboardInterrupt:
            click.echo("interrupted: the running trial is marked FAIL (reason interrupted); run the same command to resume, retrying it first", err=True)
            raise SystemExit(INTERRUPTED_EXIT) from None
    # The next commands find the storage by themselves where it is the default or in the environment.
    where = "" if storage == os.environ.get(STORAGE_ENV, DEFAULT_STORAGE) else f" --storage {shlex.quote(mask_url(storage))}"
    click.echo(render_outcome(study, where))


@main.command()
@STORAGE_OPTION
def studies(storage: str) -> None:
    """List the studies in a storage: trials by state and best value."""
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import list_studies, render_studies

    click.echo(render_studies(list_studies(open_storage(storage, create=False))))


@main.command()
@click.argument("study_name", metavar="STUDY")
@STORAGE_OPTION
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Rows in the table of best trials.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--as-config", is_flag=True, help="Print the TOML study file that reproduces the study (for run --config).")
def show(study_name: str, storage: str, top: int, as_json: bool, as_config: bool) -> None:
    """Print a study's best trial and its top trials."""
    from batchlr.studies.config import render_run_config
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import describe, load_existing_study, render_report

    study = load_existing_study(open_storage(storage, create=False), study_name)
    if as_config:
        click.echo(render_run_config(study.study_name, mask_url(storage), study.user_attrs), nl=False)
        return
    report = describe(study, top)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(render_report(report))


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


_OPTIMIZER_OPTIONS = (
    click.option("--optimizer", type=click.Choice(OPTIMIZER_NAMES), default="adam", show_default=True),
    click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True, help="For sgd and rmsprop."),
)


@main.command("lr-find")
@_data_options
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@_OPTIMIZER_OPTIONS[0]
@_OPTIMIZER_OPTIONS[1]
@click.option("--start-lr", type=click.FloatRange(min=0, min_open=True), default=1e-7, show_default=True)
@click.option("--end-lr", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--steps", type=click.IntRange(min=20), default=100, show_default=True, help="Learning rates tried.")
@click.option("--json", "as_json", is_flag=True, help="Print suggested_lr, lrs and losses as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Save the loss curve as a PNG.")
def lr_find(as_json: bool, plot: Path | None, **option: Any) -> None:
    """LR range test: raise the learning rate exponentially and suggest where the loss falls fastest."""
    from batchlr.objectives.data import dataset_slug
    from batchlr.studies.probes import find_lr, open_probe, plot_lr_range, probe_hyperparameters, render_lr_range, weak_descent_warning

    probe = open_probe(option["dataset"], option["data_dir"], option["model"], option["device"], option["seed"])
    hyperparameters = probe_hyperparameters(option["batch_size"], option["optimizer"], option["momentum"], option.get("lr", 0.0))
    result = find_lr(probe, option["model"], hyperparameters, option["seed"], option["start_lr"], option["end_lr"], option["steps"])
    if plot:
        plot_lr_range(result, plot, f"{dataset_slug(option['dataset'])}, {option['model']}, {option['optimizer']}, batch {option['batch_size']}")
    if as_json:
        record = {"suggested_lr": result.suggested_lr, "lrs": result.lrs, "losses": result.losses}
        click.echo(json.dumps({**record, "stopped_early": result.stopped_early, "loss_drop": result.loss_drop}))
        return
    click.echo("\n".join(render_lr_range(result)))
    warning = weak_descent_warning(result.loss_drop, "try more --steps, another --optimizer or --batch-size")
    if warning:
        click.echo(warning, err=True)


@main.command("noise-scale")
@_data_options
@click.option("--small-batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--big-batch", type=click.IntRange(min=2), default=1024, show_default=True, help="At most the training samples.")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--epochs", type=click.IntRange(0, MAX_EPOCHS), default=0, show_default=True, help="Train this long first; 0 measures at initialisation.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Batch size of that training.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Learning rate of that training.")
@_OPTIMIZER_OPTIONS[0]
@_OPTIMIZER_OPTIONS[1]
@click.option("--json", "as_json", is_flag=True, help="Print noise_scale, critical_batch_size and the parts as JSON.")
def noise_scale(as_json: bool, **option: Any) -> None:
    """Estimate the gradient noise scale B_simple, which predicts the critical batch size."""
    from batchlr.studies.probes import measure_noise_scale, open_probe, probe_hyperparameters, render_noise_scale

    probe = open_probe(option["dataset"], option["data_dir"], option["model"], option["device"], option["seed"])
    hyperparameters = probe_hyperparameters(option["batch_size"], option["optimizer"], option["momentum"], option.get("lr", 0.0))
    small, big = option["small_batch"], min(option["big_batch"], len(probe.indices))
    result = measure_noise_scale(probe, option["model"], option["seed"], small, big, option["repeats"], option["epochs"], hyperparameters)
    if as_json:
        record = {"critical_batch_size": result.critical_batch_size, "suggested_batch_range": result.suggested_batch_range}
        click.echo(json.dumps({**record, **dataclasses.asdict(result)}))
        return
    click.echo("\n".join(render_noise_scale(result, option["epochs"])))


@main.command()
@click.argument("study_name", metavar="STUDY")
@STORAGE_OPTION
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Where to save the weights (a state dict).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"), show_default=True, envvar="BATCHLR_DATA_DIR")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=SEED, default=0, show_default=True)
def refit(study_name: str, storage: str, output: Path, data_dir: Path, device: str, seed: int) -> None:
    """Retrain the best configuration on all training data and score it on data the search never saw."""
    from batchlr.studies.lifecycle import RunOptions
    from batchlr.studies.refit import refit_best

    result = refit_best(storage, study_name, output, RunOptions(device=device, data_dir=data_dir, seed=seed))
    click.echo(
        f"test accuracy {result.test_accuracy:.4f} on the {result.test_split} ({result.test_samples} samples); "
        f"trial {result.trial} retrained on {result.train_samples} samples in {result.seconds:.1f} s; weights in {output}"
    )


@main.command()
@click.argument("study_name", metavar="STUDY")
@STORAGE_OPTION
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory for index.html and the PNGs.")
def report(study_name: str, storage: str, output: Path) -> None:
    """Write a static HTML report of a study, with PNG copies of its plots."""
    from batchlr.studies.report import write_report
    from batchlr.studies.storage import open_storage
    from batchlr.studies.summary import load_existing_study

    files = write_report(load_existing_study(open_storage(storage, create=False), study_name), output)
    click.echo(f"wrote {files[0]} and {len(files) - 1} PNGs in {output}")


@main.command()
@STORAGE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to serve on; 0.0.0.0 exposes it to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(storage: str, host: str, port: int) -> None:
    """Serve the storage's studies in optuna-dashboard."""
    from batchlr.studies.dashboard import serve_dashboard

    serve_dashboard(storage, host, port, lambda: click.echo(f"optuna-dashboard for {mask_url(storage)} at http://{host}:{port}/ (Ctrl-C stops it)"))

