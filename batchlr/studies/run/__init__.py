"""Running trials across processes, and the probes; imports store, results, render, objectives and search."""

from batchlr.studies.run.creation import RunOptions, prepare
from batchlr.studies.run.lifecycle import OpenStudy, TrialPlan, open_study, run_trials, sampler_seed
from batchlr.studies.run.probes import (
    Probe,
    open_probe,
    probe_hyperparameters,
    remember_noise_scale,
    run_lr_find,
    run_noise_scale,
)
from batchlr.studies.run.progress import Mode, StudyProgress
from batchlr.studies.run.stopping import STOP_MIN_TRIALS
from batchlr.studies.run.throughput import measure_throughput
from batchlr.studies.run.workers import (
    PARENT_GONE,
    stop_gracefully_on_signals,
    watch_parent,
    worker_arguments,
)

__all__ = [
    "PARENT_GONE",
    "STOP_MIN_TRIALS",
    "Mode",
    "OpenStudy",
    "Probe",
    "RunOptions",
    "StudyProgress",
    "TrialPlan",
    "measure_throughput",
    "open_probe",
    "open_study",
    "prepare",
    "probe_hyperparameters",
    "remember_noise_scale",
    "run_lr_find",
    "run_noise_scale",
    "run_trials",
    "sampler_seed",
    "stop_gracefully_on_signals",
    "watch_parent",
    "worker_arguments",
]
