"""``batchlr refit``, ``evaluate`` and ``predict``: the model a study found, trained and used."""

from __future__ import annotations

from pathlib import Path

import click

from batchlr.cli_group import echo_lines
from batchlr.cli_options import (
    ARTIFACTS_OPTION,
    CACHE_DIR_OPTION,
    DATA_DIR_OPTION,
    DATASET_OPTION,
    DEVICE_OPTION,
    JSON_OPTION,
    MODEL_FILE_ARGUMENT,
    SEED_OPTION,
    STORAGE_OPTION,
    STUDY_ARGUMENT,
    TRUST_CODE_OPTION,
    given,
    output_option,
)
from batchlr.json_text import json_text


@click.command()
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
    from batchlr.studies.deploy import refit_best
    from batchlr.studies.run import RunOptions

    given_dir = data_dir if given(ctx, ["data_dir"]) else None
    echo_lines(
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


@click.command()
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
    from batchlr.objectives.training import resolve_device
    from batchlr.studies import render
    from batchlr.studies.deploy import evaluate_model, evaluation_data, load_model

    model = load_model(model_file, resolve_device(device), trust_code)
    result = evaluate_model(model, evaluation_data(model, dataset, data_dir, cache_dir), dataset)
    echo_lines(
        [json_text(result.to_dict(), indent=2) if as_json else render.evaluated(result)],
        result.note,
    )


@click.command()
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
    from batchlr.objectives.training import resolve_device
    from batchlr.studies import render
    from batchlr.studies.deploy import image_paths, load_model
    from batchlr.studies.deploy import predict as predict_images

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
