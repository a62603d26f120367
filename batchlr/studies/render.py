"""Everything batchlr says to a person: the lines of run, show, studies, the probes, progress
and the other commands, and the study's note in optuna-dashboard.

Error messages stay with the errors; all other user-facing text is made here, from the
records the commands return.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from batchlr.objectives.trial_record import TrialRecord
from batchlr.studies.spec import StudySpec
from batchlr.studies.storage import DEFAULT_STORAGE, STORAGE_ENV, mask_url
from batchlr.studies.summary import (
    RefitResult,
    StudyDescription,
    StudySummary,
    best_complete_trial_or_none,
    pareto_trials,
)

if TYPE_CHECKING:
    from batchlr.objectives.duplicates import SplitDuplicates
    from batchlr.objectives.lr_finder import LrRangeTest
    from batchlr.objectives.noise_scale import NoiseScale
    from batchlr.objectives.objective import CrossValidationObjective
    from batchlr.search.space import SearchSpace
    from batchlr.studies.artifacts import Attachment
    from batchlr.studies.export import BestConfig
    from batchlr.studies.inference import Evaluation, Prediction

RELIABLE_LOSS_DROP = (
    0.05  # an LR range test whose smoothed loss fell less than this found no descent
)


def format_params(params: dict[str, Any]) -> str:
    """``key=value`` pairs, floats to three significant digits."""
    return " ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(params.items())
    )


def training_phrase(spec: StudySpec) -> str:
    """One phrase for a study's budget, LR scaling, schedule, warmup and recipe: image size,
    augmentation, weight decay, label smoothing, Nesterov momentum and a precision other than
    auto, each where set."""
    training, space = spec.training, spec.space
    scaling, decay = space.lr_scaling, space.weight_decay
    parts = [f"{training.budget.amount} {training.budget.kind}"]
    if scaling.rule != "none":
        parts.append(f"lr {scaling.rule}-scaled from batch {scaling.reference_batch_size}")
    if training.schedule != "constant":
        parts.append(f"{training.schedule} schedule")
    if training.warmup:
        parts.append(f"{training.warmup:g} warmup epochs")
    if spec.image_size:
        parts.append(f"images resized to {spec.image_size[0]}x{spec.image_size[1]}")
    if training.augment:
        padding = f" (padding {training.crop_padding})" if training.crop_padding else ""
        parts.append(f"augment {','.join(training.augment)}{padding}")
    if decay.searched:
        parts.append(
            f"weight_decay {decay.low:.3g}:{decay.high:.3g}{' or none' if decay.try_none else ''}"
        )
    elif decay.low:
        parts.append(f"weight decay {decay.low:g}")
    if training.label_smoothing:
        parts.append(f"label smoothing {training.label_smoothing:g}")
    if space.nesterov:
        parts.append("nesterov")
    if training.precision != "auto":
        parts.append(f"precision {training.precision}")
    return ", ".join(parts)


def opening(
    name: str,
    previous_trials: int,
    masked_storage: str,
    spec: StudySpec,
    space: SearchSpace,
    device: str,
) -> tuple[list[str], str | None]:
    """What ``batchlr run`` prints before the first trial, and a warning about a weak
    ``--lr auto`` range test, or None. ``space`` is the one trials draw from (batch range capped)."""
    state = f"resuming, {previous_trials} trials so far" if previous_trials else "new"
    lines = [
        f"study {name} ({state}) in {masked_storage}",
        f"  {spec.dataset}, {spec.model}, {spec.folds} folds x {training_phrase(spec)} on "
        f"{device}; batch_size {space.batch_size[0]}:{space.batch_size[1]}, {space.lr_param} "
        f"{space.lr[0]:.3g}:{space.lr[1]:.3g}, {','.join(space.optimizers)}",
    ]
    found = spec.lr_find
    if not found:
        return lines, None
    lines.append(
        f"  --lr auto: LR range test at batch {found['batch_size']} with {found['optimizer']} "
        f"suggested {found['suggested_lr']:.3g}"
    )
    return lines, weak_descent_warning(
        found.get("loss_drop", 1.0), "the lr range may be off; consider giving --lr MIN:MAX"
    )


def workers_line(
    workers: int, trials_each: int | None, timeout: float | None, max_trials: int | None
) -> str:
    """The opening's line for ``run --workers``: what --n-trials, --timeout and --max-trials
    mean with several local workers (``trials_each`` None: until the timeout)."""
    parts = [f"  {workers} local workers"]
    if trials_each:
        parts.append(f"{trials_each} trials each ({trials_each * workers} in all)")
    if timeout:
        parts.append(f"each starting no trial after {timeout:g} s")
    if max_trials:
        parts.append(f"all stopping once the study holds {max_trials} finished trials")
    return ", ".join(parts)


def dashboard_note(spec: StudySpec, objective: CrossValidationObjective, command_line: str) -> str:
    """The study's note in optuna-dashboard (markdown): what it searches, on what (the images
    each fold's model trains and validates on, and those held out), and how it was started."""
    data, space, folds = objective.data, objective.space, objective.folds
    settings = {key: value for key, value in spec.to_attrs().items() if value is not None}
    rows = "\n".join(f"| {key} | `{value}` |" for key, value in settings.items())
    parts = [folds.train_val(fold) for fold in range(folds.k)]
    in_folds = sum(len(validate) for _, validate in parts)
    if data.test_images is None:
        kept_out = f"{len(folds.holdout()):,} held out"
    else:
        kept_out = f"the official test split ({len(data.test_images):,} images) kept out"
    return (
        f"# batchlr study\n\nTraining split of {data.name}: {len(data.labels):,} images of shape "
        f"{data.input_shape}, {data.num_classes} classes. {folds.k}-fold cross-validation on "
        f"{in_folds:,} of them: each fold's model trains on "
        f"{_count_range([len(train) for train, _ in parts])} and validates on "
        f"{_count_range([len(validate) for _, validate in parts])}; {kept_out} for the test score "
        "of `batchlr refit`.\n\n"
        f"Searches `batch_size` {space.batch_size[0]}..{space.batch_size[1]}, `{space.lr_param}` "
        f"{space.lr[0]:.3g}..{space.lr[1]:.3g} (log scale) and `optimizer` in {', '.join(space.optimizers)}.\n\n"
        f"| setting | value |\n| --- | --- |\n{rows}\n\nStarted with:\n\n```\n{command_line or 'the Python API'}\n```\n"
    )


def _count_range(counts: list[int]) -> str:
    """``2,942``, or ``2,942 to 2,943`` where the folds differ."""
    low, high = min(counts), max(counts)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


def trial_line(trial: FrozenTrial) -> str:
    """One line for a finished trial: number, state, accuracy, wall-clock seconds (training,
    validation and set-up, unlike user attr ``train_seconds``), params and why it stopped."""
    value = f"{trial.values[0]:.4f}" if trial.values else ""
    start, complete = trial.datetime_start, trial.datetime_complete
    assert start is not None and complete is not None  # Optuna sets both for a finished trial
    seconds = (complete - start).total_seconds()
    reason = TrialRecord.from_trial(trial).reason or ""
    return (
        f"trial {trial.number:>4}  {trial.state.name.lower():<8} {value:<7} {seconds:6.1f}s wall  "
        f"{format_params(trial.params)}  {reason}"
    ).rstrip()


def outcome(study: optuna.Study, storage: str) -> str:
    """What ``batchlr run`` prints at the end: the best trial, the Pareto front, and what to do
    next; the commands name ``storage`` unless they find it by themselves (the default, or
    the environment's)."""
    storage_option = (
        ""
        if storage == os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
        else f" --storage {shlex.quote(mask_url(storage))}"
    )
    best = best_complete_trial_or_none(study)
    if best is None:
        return "no trial has completed yet: every one was pruned or failed; run more, or widen the ranges"
    lines = [
        f"best: trial {best.number}, accuracy {best.values[0]:.4f}, {format_params(best.params)}"
    ]
    if len(study.directions) > 1:
        lines.append(
            "accuracy/time Pareto front: "
            + ", ".join(
                f"{t.number} ({t.values[0]:.3f}, {t.values[1]:.1f} s)" for t in pareto_trials(study)
            )
        )
    name = shlex.quote(study.study_name)
    lines += [
        f"see it:    batchlr show {name}{storage_option}",
        f"export it: batchlr export {name}{storage_option} --output best.json",
        f"browse it: batchlr dashboard{storage_option}",
    ]
    return "\n".join(lines)


def studies_table(summaries: Sequence[StudySummary]) -> str:
    """The table ``batchlr studies`` prints: trials by state and best value, a study a line."""
    if not summaries:
        return "no studies"
    width = max(len("study"), *(len(summary.name) for summary in summaries))
    lines = [f"{'study':<{width}}  complete  pruned  fail  running  waiting  best"]
    for summary in summaries:
        counts = summary.trials_by_state
        best = "-" if summary.best_value is None else f"{summary.best_value:.4f}"
        lines.append(
            f"{summary.name:<{width}}  {counts['COMPLETE']:>8}  {counts['PRUNED']:>6}  "
            f"{counts['FAIL']:>4}  {counts['RUNNING']:>7}  {counts['WAITING']:>7}  {best}"
        )
    return "\n".join(lines)


def study_report(report: StudyDescription) -> str:
    """The text ``batchlr show`` prints for a :func:`batchlr.studies.summary.describe` report."""
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
    lines = [
        heading,
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


def or_nan(value: float | None) -> float:
    """``value``, or nan (printed as ``nan``) for a number a trial lacks."""
    return math.nan if value is None else value


def exported(path: Path, config: BestConfig) -> str:
    """What ``batchlr export`` prints."""
    seconds = "" if config.train_seconds is None else f", {config.train_seconds:.1f} s training"
    return (
        f"wrote {path}: trial {config.trial}, accuracy {config.value:.4f}{seconds}, "
        f"batch_size={config.batch_size} lr={config.lr:.3g} optimizer={config.optimizer}"
    )


def refitted(result: RefitResult, path: Path) -> tuple[list[str], str | None]:
    """What ``batchlr refit`` prints, and a warning when the model could not be attached to the study."""
    line = (
        f"test accuracy {result.test_accuracy:.4f} on the {result.test_split} ({result.test_samples} samples); "
        f"trial {result.trial} retrained on {result.train_samples} samples in {result.seconds:.1f} s; model in {path}"
    )
    lines, warning = attached("model", result.artifacts)
    return [line, *lines], warning


def evaluated(result: Evaluation) -> str:
    """What ``batchlr evaluate`` prints: the accuracy, each class's, and the confusion matrix."""
    width = max(5, *map(len, result.classes))
    lines = [
        f"{result.dataset} ({result.split}): accuracy {result.accuracy:.4f} on {result.images:,} images",
        "",
        f"{'class':<{width}}  {'images':>6}  accuracy",
    ]
    lines += [
        f"{name:<{width}}  {row['images']:>6}  {row['accuracy']:>8.4f}"
        for name, row in result.per_class.items()
    ]
    column = max(5, len(str(max(max(row) for row in result.confusion))))
    lines += [
        "",
        "confusion matrix: a row per true class, a column per predicted class (first letters)",
    ]
    lines.append(
        " " * width + "  " + " ".join(f"{name[:column]:>{column}}" for name in result.classes)
    )
    lines += [
        f"{name:<{width}}  " + " ".join(f"{count:>{column}}" for count in row)
        for name, row in zip(result.classes, result.confusion, strict=True)
    ]
    return "\n".join(lines)


def predictions(results: Sequence[Prediction]) -> str:
    """What ``batchlr predict`` prints: a line per image, its most probable classes first."""
    return "\n".join(
        f"{result.path}: "
        + ", ".join(f"{name} {probability:.3f}" for name, probability in result.top)
        for result in results
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
    try:
        private = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        private = False
    warning = (
        None
        if private
        else (
            f"warning: the dashboard on {host} has no authentication: anyone who reaches port {port} can read "
            "these studies and their files; serve on 127.0.0.1 and reach it through an SSH tunnel instead"
        )
    )
    return [line], warning


def split_duplicates_warning(found: SplitDuplicates | None, sources: Sequence[str]) -> str | None:
    """A warning when a new study's folds split identical images, else None. ``sources``
    names the images by file (an image folder); without it they are named by index."""
    if found is None:
        return None
    first, copy = found.example
    example = (
        f"{sources[first]} and {sources[copy]}"
        if sources
        else f"training images {first} and {copy}"
    )
    return (
        f"warning: {found.images} training images have an identical copy in another fold or in the hold-out "
        f"(e.g. {example}): validation then scores images that training saw, so accuracy comes out too high; "
        "remove the duplicate images and create a new study"
    )


def weak_descent_warning(loss_drop: float, remedy: str) -> str | None:
    """A warning when an LR range test's loss fell less than :data:`RELIABLE_LOSS_DROP`, else None."""
    if loss_drop >= RELIABLE_LOSS_DROP:
        return None
    return f"warning: the LR range test's loss fell only {loss_drop:.1%}, so its suggestion is weak; {remedy}"


def lr_range(result: LrRangeTest) -> tuple[list[str], str | None]:
    """What ``batchlr lr-find`` prints: the suggestion and the search around it, and a warning
    when the curve had no real descent, or None."""
    stop = (
        f"stopped at lr {result.lrs[-1]:.3g} as the loss diverged"
        if result.stopped_early
        else f"swept to lr {result.lrs[-1]:.3g}"
    )
    lines = [
        f"suggested lr {result.suggested_lr:.3g} ({len(result.lrs)} learning rates, {stop})",
        f"search around it: batchlr run --lr {result.suggested_lr / 10:.2g}:{result.suggested_lr * 10:.2g}",
    ]
    return lines, weak_descent_warning(
        result.loss_drop, "try more --lr-count, another --optimizer or --batch-size"
    )


def attached(what: str, attachment: Attachment) -> tuple[list[str], str | None]:
    """Where ``refit``'s model, ``report``'s files or a probe's figure (``what``) were attached,
    or a warning naming exactly the files attached, those not, and why."""
    if not attachment.missed:
        return [
            f"attached the {what} to study {attachment.study}'s artifacts in {attachment.store}"
        ], None
    missed = f"{', '.join(path.name for path in attachment.missed)}; {attachment.reason}"
    if not attachment.attached:
        return [], f"warning: not attached to the study's artifacts: {missed}"
    total = len(attachment.attached) + len(attachment.missed)
    names = ", ".join(path.name for path in attachment.attached)
    return (
        [],
        f"warning: attached {len(attachment.attached)} of {total} files to the study's artifacts "
        f"in {attachment.store}: {names}; not attached: {missed}",
    )


def lr_range_record(result: LrRangeTest) -> dict[str, Any]:
    """What ``batchlr lr-find --json`` prints."""
    return {
        "suggested_lr": result.suggested_lr,
        "lrs": result.lrs,
        "losses": result.losses,
        "stopped_early": result.stopped_early,
        "loss_drop": result.loss_drop,
    }


def noise_scale_record(result: NoiseScale) -> dict[str, Any]:
    """What ``batchlr noise-scale --json`` prints."""
    return {
        "critical_batch_size": result.critical_batch_size,
        "suggested_batch_range": result.suggested_batch_range,
        **dataclasses.asdict(result),
    }


def noise_scale(result: NoiseScale, epochs: int) -> list[str]:
    """What ``batchlr noise-scale`` prints: the estimate, its parts and the batch range it suggests."""
    when = f"after {epochs} epochs" if epochs else "at initialisation"
    low, high = result.suggested_batch_range
    return [
        f"gradient noise scale B_simple = {result.noise_scale:.1f} {when} (|G|^2 "
        f"{result.gradient_norm_squared:.3g}, tr(S) {result.covariance_trace:.3g}; batches "
        f"{result.small_batch} and {result.big_batch}, {result.repeats} repeats)",
        f"critical batch size ~ {result.critical_batch_size}: batches up to it cut the steps "
        "almost proportionally, larger ones mostly add compute",
        f"suggested batch range: {low}:{high}",
    ]
