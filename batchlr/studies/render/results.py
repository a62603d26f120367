"""The lines that present results: the studies table, ``show``, exports, reports, the dashboard's address."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.render.phrases import attached, format_params, or_nan, training_phrase
from batchlr.studies.store.summary import (
    StudyDescription,
    StudySummary,
)

if TYPE_CHECKING:
    from batchlr.studies.deploy.best_config import BestConfig
    from batchlr.studies.results.artifacts import Attachment


def studies_table(summaries: Sequence[StudySummary]) -> str:
    """The table ``batchlr studies`` prints: trials by state and best value, a study a line."""
    if not summaries:
        return "no studies"
    width = max(len("study"), *(len(summary.name) for summary in summaries))
    lines = [f"{'study':<{width}}  complete  pruned  fail  running  waiting  best"]
    for summary in summaries:
        counts = summary.trials_by_state
        best = "-" if summary.best_value is None else f"{summary.best_value:.4f}"
        unfinished = "  (unfinished: being created, or its creation was interrupted)"
        lines.append(
            f"{summary.name:<{width}}  {counts['COMPLETE']:>8}  {counts['PRUNED']:>6}  "
            f"{counts['FAIL']:>4}  {counts['RUNNING']:>7}  {counts['WAITING']:>7}  {best}"
            + (unfinished if summary.unfinished else "")
        )
    return "\n".join(lines)


def study_report(report: StudyDescription) -> str:
    """The text ``batchlr show`` prints for a :func:`batchlr.studies.store.summary.describe` report."""
    spec, best = report.spec, report.best
    if spec is None:
        return _plain_study_report(report)
    heading = (
        f"study {report.study}: {spec.dataset} / {spec.model}, {spec.folds} folds x "
        f"{training_phrase(spec)}; trials {_states(report)}"
    )
    if best is None:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(report.reasons.items()))
        why = f" (ended: {reasons})" if reasons else ""
        return f"{heading}\nno complete trial yet{why}; run more trials, or widen --lr and --batch-size"
    scores = TrialRecord.from_trial(best).fold_scores or []
    folds = " ".join(f"{score:.4f}" for score in scores) or "-"
    lines = [heading]
    if report.stop is not None:
        lines.append(
            f"--stop auto ended a run before trial {report.stop.next_trial}: {report.stop.reason}"
        )
    lines += [
        f"best trial {best.number}: accuracy {best.values[0]:.4f}, folds {folds}",
        *_param_lines(best.params),
        "",
        f"top {len(report.top)} by accuracy:",
        *_trial_table(report.top),
    ]
    if report.pareto:
        lines += [
            "",
            f"accuracy/time Pareto front ({len(report.pareto)} trials):",
            *_trial_table(report.pareto),
        ]
    return "\n".join(lines)


def _plain_study_report(report: StudyDescription) -> str:
    """``batchlr show`` for a study made with Optuna itself: its objectives by name and
    direction (best is the lowest value where it minimises), its params, no batchlr columns."""
    metrics, directions, best = report.metrics, report.directions, report.best
    objectives = ", ".join(
        f"{direction} {metric}" for metric, direction in zip(metrics, directions, strict=True)
    )
    heading = f"study {report.study} (not made by batchlr; {objectives}): trials {_states(report)}"
    if best is None:
        return f"{heading}\nno complete trial yet"
    order = "lowest" if directions[0] == "minimize" else "highest"
    lines = [
        heading,
        f"best trial {best.number} ({order} {metrics[0]}): "
        + ", ".join(
            f"{metric} {value:.6g}" for metric, value in zip(metrics, best.values, strict=True)
        ),
        *_param_lines(best.params),
        "",
        f"top {len(report.top)} by {metrics[0]}, {order} first:",
        *_plain_table(report.top, metrics),
    ]
    if report.pareto:
        lines += [
            "",
            f"Pareto front ({len(report.pareto)} trials):",
            *_plain_table(report.pareto, metrics),
        ]
    return "\n".join(lines)


def _plain_table(trials: list[FrozenTrial], metrics: list[str]) -> list[str]:
    widths = [max(10, len(metric)) for metric in metrics]
    lines = [
        f"{'trial':>5}  "
        + "  ".join(f"{metric:>{width}}" for metric, width in zip(metrics, widths, strict=True))
        + "  params"
    ]
    for trial in trials:
        values = "  ".join(
            f"{value:>{width}.6g}" for value, width in zip(trial.values, widths, strict=True)
        )
        lines.append(f"{trial.number:>5}  {values}  {format_params(trial.params)}")
    return lines


def _states(report: StudyDescription) -> str:
    return (
        ", ".join(
            f"{count} {state.lower()}" for state, count in sorted(report.trials_by_state.items())
        )
        or "none"
    )


def _param_lines(params: dict[str, Any]) -> list[str]:
    return [
        f"  {key:<12} {value:.3g}" if isinstance(value, float) else f"  {key:<12} {value}"
        for key, value in sorted(params.items())
    ]


def _trial_table(trials: list[FrozenTrial]) -> list[str]:
    lines = [
        f"{'trial':>5}  {'accuracy':>8}  {'train s':>7}  {'batch':>5}  {'lr':>9}  "
        f"{'optimizer':<9}  {'momentum':>8}  {'img/s':>7}"
    ]
    for trial in trials:
        params, record = trial.params, TrialRecord.from_trial(trial)
        momentum = "-" if params.get("momentum") is None else f"{params['momentum']:.3f}"
        lr = params.get("lr", math.nan) if record.lr is None else record.lr
        lines.append(
            f"{trial.number:>5}  {trial.values[0]:>8.4f}  {or_nan(record.train_seconds):>7.1f}  "
            f"{params.get('batch_size', '-'):>5}  {lr:>9.3g}  "
            f"{params.get('optimizer', '-'):<9}  {momentum:>8}  {or_nan(record.images_per_second):>7.0f}"
        )
    return lines


def exported(path: Path, config: BestConfig) -> str:
    """What ``batchlr export`` prints."""
    seconds = "" if config.train_seconds is None else f", {config.train_seconds:.1f} s training"
    return (
        f"wrote {path}: trial {config.trial}, accuracy {config.value:.4f}{seconds}, "
        f"batch_size={config.batch_size} lr={config.lr:.3g} optimizer={config.optimizer}"
    )


def report_written(
    files: Sequence[Path], directory: Path, attachment: Attachment
) -> tuple[list[str], str | None]:
    """What ``batchlr report`` prints: the files and where they were attached, and a warning
    saying which were not and why, or None."""
    lines, warning = attached("report", attachment)
    return [f"wrote {files[0]} and {len(files) - 1} PNGs in {directory}", *lines], warning


def dashboard_address(masked_storage: str, host: str, port: int) -> tuple[list[str], str | None]:
    """What ``batchlr dashboard`` prints once it serves, and a warning when others can reach it."""
    line = f"optuna-dashboard for {masked_storage} at http://{host}:{port}/ (Ctrl-C stops it)"
    warning = (
        None
        if _is_loopback(host)
        else (
            f"warning: the dashboard on {host} has no authentication: anyone who reaches port {port} can read "
            "these studies and their files; serve on 127.0.0.1 and reach it through an SSH tunnel instead"
        )
    )
    return [line], warning


def proxy_address(
    masked_storage: str, host: str, port: int, connections: int
) -> tuple[list[str], str | None]:
    """What ``batchlr storage-proxy`` prints once it listens, and a warning when others can reach it."""
    lines = [
        f"storage proxy for {masked_storage} at grpc://{host}:{port}, on at most {connections} "
        "database connections (Ctrl-C stops it)",
        f"workers: batchlr run --storage grpc://{host}:{port} ...; it carries no artifacts: give "
        "refit, report, lr-find, noise-scale and dashboard --artifacts DIR, one every machine reaches",
    ]
    warning = (
        None
        if _is_loopback(host)
        else (
            f"warning: the storage proxy on {host} has no authentication: anyone who reaches port "
            f"{port} can read and change every study; keep the port inside the cluster's network"
        )
    )
    return lines, warning


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
