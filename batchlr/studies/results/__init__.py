"""Presenting results: artifacts, figures, the HTML report, optuna-dashboard; imports store, render, not run, deploy."""

from batchlr.search.ridge import Ridge, RidgeFit, fit_ridges
from batchlr.studies.results.answer import StudyAnswer, study_answer
from batchlr.studies.results.artifacts import Attachment, attach, attach_figure
from batchlr.studies.results.band import Band, near_optimal_band
from batchlr.studies.results.dashboard import serve_dashboard
from batchlr.studies.results.plotting import log_ticks, save_png, tick_label
from batchlr.studies.results.probe_figures import lr_range_figure, noise_scale_figure
from batchlr.studies.results.report import write_report, write_study_report
from batchlr.studies.results.scored_trials import scored_trials

__all__ = [
    "Attachment",
    "Band",
    "Ridge",
    "RidgeFit",
    "StudyAnswer",
    "attach",
    "attach_figure",
    "fit_ridges",
    "log_ticks",
    "lr_range_figure",
    "near_optimal_band",
    "noise_scale_figure",
    "save_png",
    "scored_trials",
    "serve_dashboard",
    "study_answer",
    "tick_label",
    "write_report",
    "write_study_report",
]
