"""A static HTML report of a study: its key numbers and the figures of :mod:`batchlr.studies.results.figures`,
interactive (plotly) on one self-contained page and as PNGs."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError
from batchlr.files import write_bytes_atomically, write_text_atomically
from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.render.answer import answer
from batchlr.studies.render.phrases import format_params, or_nan, training_phrase
from batchlr.studies.results.answer import study_answer
from batchlr.studies.results.artifacts import Attachment, attach
from batchlr.studies.results.figures import (
    accuracy_by_optimizer,
    accuracy_over_time,
    best_so_far,
    fold_spread,
    learning_curves,
)
from batchlr.studies.results.lr_figure import lr_over_batch_size
from batchlr.studies.results.plotting import Figure, png, to_plotly
from batchlr.studies.store.spec import StudySpec
from batchlr.studies.store.storage import open_storage
from batchlr.studies.store.stored_spec import study_spec
from batchlr.studies.store.summary import (
    best_complete_trial,
    load_existing_study,
    standard_error,
)

FIGURES: dict[str, Callable[[optuna.Study, StudySpec], Figure]] = {
    "lr-over-batch-size": lr_over_batch_size,
    "learning-curves": learning_curves,
    "accuracy-over-time": accuracy_over_time,
    "fold-spread": fold_spread,
    "best-so-far": best_so_far,
    "accuracy-by-optimizer": accuracy_by_optimizer,
}
"""The figures (a) to (f) by the name of their PNG."""


def write_study_report(
    storage_url: str, study_name: str, output: Path, artifacts: Path | None = None
) -> tuple[list[Path], Attachment]:
    """``batchlr report``: :func:`write_report` for the study ``study_name`` of a storage, its
    page and figures then attached to the study's artifacts; returns the files and what was
    attached (on a read-only storage, say, nothing: the report itself only reads)."""
    files = write_report(
        load_existing_study(open_storage(storage_url, access="read"), study_name), output
    )
    return files, attach(storage_url, study_name, files, artifacts)


def write_report(study: optuna.Study, output: Path) -> list[Path]:
    """Write ``index.html`` and a PNG of each figure of :data:`FIGURES`
    into ``output``; returns the files written.

    The page opens with the key numbers (the CV estimate with its standard error over folds,
    and the test score once ``refit`` has run, with why the two differ) and what ``show`` says
    of the ridge and the band (an optimizer without a fit with the reason), then each figure
    interactive (plotly, inline: the page works offline). A figure the study has too little
    for is left out with a note. The page and every PNG are drawn before the first file is
    written, and each file is written whole or not at all.

    Raises:
        BatchlrError: for a study batchlr did not make, or without a complete trial, before
            anything is written.
    """
    spec = study_spec(study)
    best = best_complete_trial(study)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BatchlrError(f"cannot create {output}: {error.strerror}") from error
    sections: list[str] = []
    pngs: dict[Path, bytes] = {}
    for index, (name, make) in enumerate(FIGURES.items()):
        try:
            figure = make(study, spec)
        except ValueError as reason:
            sections.append(
                f"<h2>{html.escape(name)}</h2><p>not drawn: {html.escape(str(reason))}</p>"
            )
            continue
        plot = to_plotly(figure)
        sections.append(
            plot.to_html(full_html=False, include_plotlyjs="inline" if not pngs else False)
        )
        if figure.caption:
            sections.append(f"<p class='caption'>{html.escape(figure.caption)}</p>")
        pngs[output / f"{chr(ord('a') + index)}-{name}.png"] = png(figure)
    page = _page(study, spec, best, sections)
    for path, drawn in pngs.items():
        write_bytes_atomically(path, drawn)
    write_text_atomically(output / "index.html", page)
    return [output / "index.html", *pngs]


def key_numbers(study: optuna.Study, spec: StudySpec, best: FrozenTrial) -> dict[str, str]:
    """The report's table: the study, the best trial's CV accuracy with its standard error over
    folds, and the refit's test accuracy with a sentence on why it differs from the CV estimate."""
    record, refit = TrialRecord.from_trial(best), study.user_attrs
    states = {
        state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
        for state in TrialState
    }
    folds = record.fold_scores or []
    error = standard_error(folds)
    rows = {
        "data set / model": f"{spec.dataset} / {spec.model}",
        "folds × training": f"{spec.folds} × {training_phrase(spec)}",
        "trials": ", ".join(f"{count} {state}" for state, count in states.items() if count),
        "best CV accuracy": (
            f"{best.values[0]:.4f} ± {error:.4f} (standard error over {len(folds)} folds; trial "
            f"{best.number})"
        ),
        "fold scores": " ".join(f"{score:.4f}" for score in folds),
        "best params": format_params(best.params),
        "training seconds / images per second": (
            f"{or_nan(record.train_seconds):.1f} / {or_nan(record.images_per_second):.0f}"
        ),
    }
    if "test_accuracy" not in refit:
        rows["test accuracy"] = (
            "not refit yet: batchlr refit scores the best configuration on data the search never saw"
        )
        return rows
    accuracy, images = refit["test_accuracy"], refit.get("test_images")
    spread = (
        f" ± {math.sqrt(accuracy * (1 - accuracy) / images):.4f} (binomial standard error, {images} images)"
        if images
        else ""
    )
    rows["test accuracy (refit)"] = (
        f"{accuracy:.4f}{spread} on the {refit['test_split']}, trial {refit.get('refit_trial')}"
    )
    trained = refit.get("refit_images")
    share = (
        f"{(spec.folds - 1) / spec.folds:.0%} of the {trained} training images"
        if trained
        else f"{spec.folds - 1}/{spec.folds} of the training images"
    )
    rows["why they differ"] = (
        f"each CV model trained on {share}, the refit model on all of them, so the CV estimate is pessimistic "
        "for the final model; the test score is the one to quote, the CV score the one to compare configurations by"
    )
    return rows


def _page(study: optuna.Study, spec: StudySpec, best: FrozenTrial, sections: list[str]) -> str:
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in key_numbers(study, spec, best).items()
    )
    answered = "\n".join(line for line in answer(study_answer(study)) if line)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>batchlr: {html.escape(study.study_name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "th{text-align:left;padding-right:1em;vertical-align:top}"
        ".caption{color:#555;font-size:small}pre{white-space:pre-wrap}</style>"
        f"</head><body><h1>Study {html.escape(study.study_name)}</h1>"
        f"<table>{table}</table><pre>{html.escape(answered)}</pre>{''.join(sections)}</body></html>"
    )
