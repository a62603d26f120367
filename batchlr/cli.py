"""The ``batchlr`` command line: click wiring only.

Each command parses its options, calls one function of :mod:`batchlr.studies` and prints
what it returns through :mod:`batchlr.studies.render`. Heavy imports (torch, scikit-learn)
happen inside the commands that need them, so that ``batchlr --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path

import click

from batchlr import __version__
from batchlr.cli_group import BatchlrGroup, echo_lines
from batchlr.cli_models import evaluate, predict, refit
from batchlr.cli_options import (
    ARTIFACTS_OPTION,
    JSON_OPTION,
    STORAGE_OPTION,
    STUDY_ARGUMENT,
    FiniteFloatRange,
    output_option,
)
from batchlr.cli_probes import lr_find, noise_scale, throughput
from batchlr.cli_run import run
from batchlr.json_text import json_text
from batchlr.studies.store import DEFAULT_PROXY_PORT, mask_url


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
@STORAGE_OPTION
def studies(storage: str) -> None:
    """List the studies in a storage: trials by state and best value."""
    from batchlr.studies import render
    from batchlr.studies.store import list_studies, open_storage

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
    """Print a study's best trial, its top trials, the best lr over batch size fitted per
    optimizer, and the band of trials the folds cannot tell from the best."""
    from batchlr.studies import render
    from batchlr.studies.store import (
        describe,
        load_existing_study,
        open_storage,
        render_run_config,
        study_spec,
    )

    study = load_existing_study(open_storage(storage, access="read"), study_name)
    if as_config:
        click.echo(
            render_run_config(study.study_name, mask_url(storage), study_spec(study)), nl=False
        )
        return
    from batchlr.studies.results import study_answer

    report = describe(study, top)
    found = study_answer(study) if report.spec is not None else None
    if as_json:
        click.echo(json_text({**report.to_json(), **(found.to_json() if found else {})}, indent=2))
        return
    click.echo(render.study_report(report))
    if found:
        click.echo("\n".join(render.answer(found)))


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
    from batchlr.studies.deploy import export_trial

    if (pick == "fastest-within") != (delta is not None):
        raise click.UsageError(
            "give DELTA exactly with --pick fastest-within, e.g. --pick fastest-within 0.01"
        )
    click.echo(render.exported(output, export_trial(storage, study_name, output, delta, language)))


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
    from batchlr.studies.results import serve_dashboard

    serve_dashboard(
        storage,
        host,
        port,
        lambda: echo_lines(*render.dashboard_address(mask_url(storage), host, port)),
        artifacts,
    )


@main.command("storage-proxy")
@STORAGE_OPTION
@click.option(
    "--host",
    default="127.0.0.1",
    help="Interface to listen on; 0.0.0.0 lets workers on other machines reach it.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=DEFAULT_PROXY_PORT, help="Port to listen on."
)
def storage_proxy(storage: str, host: str, port: int) -> None:
    """Serve a database to many workers through Optuna's gRPC storage proxy.

    Workers run with --storage grpc://HOST:PORT and hold no database connection; the proxy
    holds a few. It carries no artifacts: give every worker an --artifacts directory they
    all reach.
    """
    from batchlr.studies import render
    from batchlr.studies.store import serve_storage_proxy

    serve_storage_proxy(
        storage,
        host,
        port,
        lambda connections: echo_lines(
            *render.proxy_address(mask_url(storage), host, port, connections)
        ),
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
    from batchlr.studies.results import write_study_report

    files, attached = write_study_report(storage, study_name, output, artifacts)
    echo_lines(*render.report_written(files, output, attached))


# The commands of the modules beside this one, grouped by what they do.
for command in (run, lr_find, noise_scale, throughput, refit, evaluate, predict):
    main.add_command(command)
