"""Everything batchlr says to a person, from the records commands return; runs on store, search, objectives.

The lines of run, show, studies, the probes, progress and the other commands, and the study's
note in optuna-dashboard. Error messages stay with the errors; all other user-facing text is
made here, one module per kind of command.
"""

from batchlr.studies.render.answer import answer, band_lines, ridge_line, throughput
from batchlr.studies.render.models import evaluated, predictions, refitted, split_duplicates_warning
from batchlr.studies.render.phrases import attached, format_params, or_nan, training_phrase
from batchlr.studies.render.probes import (
    RELIABLE_LOSS_DROP,
    lr_range,
    lr_range_record,
    lr_test_warning,
    noise_scale,
    noise_scale_record,
)
from batchlr.studies.render.results import (
    dashboard_address,
    exported,
    proxy_address,
    report_written,
    studies_table,
    study_report,
)
from batchlr.studies.render.run import dashboard_note, opening, outcome, trial_line, workers_line

__all__ = [
    "RELIABLE_LOSS_DROP",
    "answer",
    "attached",
    "band_lines",
    "dashboard_address",
    "dashboard_note",
    "evaluated",
    "exported",
    "format_params",
    "lr_range",
    "lr_range_record",
    "lr_test_warning",
    "noise_scale",
    "noise_scale_record",
    "opening",
    "or_nan",
    "outcome",
    "predictions",
    "proxy_address",
    "refitted",
    "report_written",
    "ridge_line",
    "split_duplicates_warning",
    "studies_table",
    "study_report",
    "throughput",
    "training_phrase",
    "trial_line",
    "workers_line",
]
