"""Presenting results: artifacts, figures, the HTML report, optuna-dashboard; imports store, render, not run, deploy."""

from batchlr.studies.results.artifacts import Attachment, attach, attach_figure
from batchlr.studies.results.dashboard import serve_dashboard
from batchlr.studies.results.plotting import log_ticks, save_png, tick_label
from batchlr.studies.results.probe_figures import lr_range_figure, noise_scale_figure
from batchlr.studies.results.report import write_report, write_study_report

__all__ = [
    "Attachment",
    "attach",
    "attach_figure",
    "log_ticks",
    "lr_range_figure",
    "noise_scale_figure",
    "save_png",
    "serve_dashboard",
    "tick_label",
    "write_report",
    "write_study_report",
]
