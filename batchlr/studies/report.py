"""A static HTML report of a study (interactive plotly figures) with PNG copies of the plots."""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from batchlr.errors import BatchlrError
from batchlr.files import write_atomically, write_text_atomically
from batchlr.studies.artifacts import attach
from batchlr.studies.render import format_params, training_phrase
from batchlr.studies.spec import StudySpec, study_spec
from batchlr.studies.storage import open_storage
from batchlr.studies.summary import best_complete_trial, load_existing_study, top_trials

FOLD_SPREAD_TRIALS = 10


def _accuracy(trial: FrozenTrial) -> float:
    return trial.values[0]


def write_study_report(storage_url: str, study_name: str, output: Path, artifacts: Path | None = None) -> tuple[list[Path], Path | str | None]:
    """``batchlr report``: :func:`write_report` for the study ``study_name`` of a storage, its
    page and figures then attached to the study's artifacts; returns the files and the artifact
    store (``None``: the storage has none), or why they could not be attached (a read-only
    storage, say: the report itself only reads)."""
    files = write_report(load_existing_study(open_storage(storage_url, access="read"), study_name), output)
    try:
        return files, attach(storage_url, study_name, files, artifacts)
    except BatchlrError as error:
        return files, str(error)


def write_report(study: optuna.Study, output: Path) -> list[Path]:
    """Write ``index.html`` and PNG copies of the plots into ``output``; returns the files written.

    The figures: optimisation history, accuracy over learning rate × batch size, parameter
    importances, parallel coordinates, accuracy by optimizer and the spread of fold scores.
    A figure the study has too few trials for is left out with a note. Each file is written
    whole or not at all (see :func:`batchlr.files.write_atomically`).

    Raises:
        BatchlrError: for a study batchlr did not make, or without a complete trial, before
            anything is written.
    """
    spec = study_spec(study)
    best = best_complete_trial(study)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BatchlrError(f"cannot create {output}: {error.strerror}") from None
    lr_param = "base_lr" if "base_lr" in best.params else "lr"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    by_optimizer = {
        name: [_accuracy(t) for t in complete if t.params.get("optimizer") == name]
        for name in sorted({str(t.params.get("optimizer")) for t in complete})
    }
    fold_spread = {f"trial {t.number}": t.user_attrs.get("fold_scores", []) for t in top_trials(study, FOLD_SPREAD_TRIALS)}
    target = {"target": _accuracy, "target_name": "accuracy"}
    interactive, static = optuna.visualization, optuna.visualization.matplotlib
    # Each figure twice: interactive (plotly) for the page, matplotlib for the PNG (no browser needed).
    figures: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "Optimisation history": (
            lambda: interactive.plot_optimization_history(study, **target),
            lambda: static.plot_optimization_history(study, **target),
        ),
        f"Accuracy over {lr_param} and batch size": (
            lambda: interactive.plot_contour(study, params=[lr_param, "batch_size"], **target),
            lambda: static.plot_contour(study, params=[lr_param, "batch_size"], **target),
        ),
        "Parameter importances": (
            lambda: interactive.plot_param_importances(study, **target),
            lambda: static.plot_param_importances(study, **target),
        ),
        "Parallel coordinates": (
            lambda: interactive.plot_parallel_coordinate(study, **target),
            lambda: static.plot_parallel_coordinate(study, **target),
        ),
        "Accuracy by optimizer": (lambda: _plotly_boxes(by_optimizer, "accuracy"), lambda: _matplotlib_boxes(by_optimizer, "accuracy")),
        "Spread of fold scores (best trials)": (
            lambda: _plotly_boxes(fold_spread, "fold accuracy"),
            lambda: _matplotlib_boxes(fold_spread, "fold accuracy"),
        ),
    }
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or assumed
    from matplotlib import pyplot

    sections, written = [], []
    for index, (title, (make_interactive, make_static)) in enumerate(figures.items()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's experimental and few-trials warnings
                figure = make_interactive()
                axes = make_static()
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            sections.append(f"<h2>{html.escape(title)}</h2><p>not drawn: {html.escape(str(error))}</p>")
            continue
        figure.update_layout(title=title)
        sections.append(figure.to_html(full_html=False, include_plotlyjs="inline" if not written else False))
        canvas = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        canvas.suptitle(title)
        canvas.set_size_inches(8, 5)
        canvas.tight_layout()
        written.append(output / f"{index + 1}-{_slug(title)}.png")
        # The temporary file's name ends in .tmp, so the format cannot come from it.
        write_atomically(written[-1], lambda temporary: canvas.savefig(temporary, dpi=110, format="png"))
        pyplot.close("all")
    page = output / "index.html"
    write_text_atomically(page, _page(study, spec, best, sections))
    return [page, *written]


def _groups(groups: dict[str, list[float]]) -> dict[str, list[float]]:
    kept = {name: values for name, values in groups.items() if values}
    if not kept:
        raise ValueError("no complete trials to compare")
    return kept


def _plotly_boxes(groups: dict[str, list[float]], axis: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure([go.Box(y=values, name=name, boxpoints="all") for name, values in _groups(groups).items()])
    figure.update_layout(yaxis_title=axis, showlegend=False)
    return figure


def _matplotlib_boxes(groups: dict[str, list[float]], axis: str) -> Any:
    from matplotlib import pyplot

    kept = _groups(groups)
    _, axes = pyplot.subplots()
    axes.boxplot(list(kept.values()), tick_labels=list(kept))
    axes.set_ylabel(axis)
    axes.tick_params(axis="x", labelrotation=20)
    return axes


def _slug(title: str) -> str:
    return "".join(character if character.isalnum() else "-" for character in title.lower()).strip("-")


def _page(study: optuna.Study, spec: StudySpec, best: FrozenTrial, sections: list[str]) -> str:
    attrs, settings = best.user_attrs, study.user_attrs
    states = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    rows = {
        "data set / model": f"{spec.dataset} / {spec.model}",
        "folds × training": f"{spec.folds} × {training_phrase(spec)}",
        "trials": ", ".join(f"{count} {state}" for state, count in states.items() if count),
        "best CV accuracy": f"{best.values[0]:.4f} (trial {best.number})",
        "fold scores": " ".join(f"{score:.4f}" for score in attrs.get("fold_scores", [])),
        "best params": format_params(best.params),
        "training seconds / images per second": f"{attrs.get('train_seconds', float('nan')):.1f} / {attrs.get('images_per_second', float('nan')):.0f}",
        "test accuracy (batchlr refit)": f"{settings['test_accuracy']:.4f}" if "test_accuracy" in settings else "not refit yet",
    }
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>batchlr: {html.escape(study.study_name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}th{text-align:left;padding-right:1em}</style>"
        f"</head><body><h1>Study {html.escape(study.study_name)}</h1><table>{table}</table>{''.join(sections)}</body></html>"
    )
