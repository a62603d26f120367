"""The lines of ``batchlr run``: its opening, one line per trial, its outcome, and the study's dashboard note."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

from batchlr.objectives.trial_record import TrialRecord
from batchlr.search.ridge import LEARNED_MARGIN
from batchlr.studies.render.phrases import format_params, training_phrase
from batchlr.studies.render.probes import lr_test_warning
from batchlr.studies.store.data_facts import Stop, data_facts, last_stop
from batchlr.studies.store.secrets import mask_url
from batchlr.studies.store.spec import StudySpec
from batchlr.studies.store.storage import DEFAULT_STORAGE, STORAGE_ENV
from batchlr.studies.store.summary import (
    FINISHED,
    best_complete_trial_or_none,
    pareto_trials,
)

if TYPE_CHECKING:
    from batchlr.objectives.objective import CrossValidationObjective
    from batchlr.search.space import SearchSpace


def opening(
    name: str,
    previous_trials: int,
    masked_storage: str,
    spec: StudySpec,
    space: SearchSpace,
    device: str,
    stored: StudySpec | None = None,
) -> tuple[list[str], str | None]:
    """What ``batchlr run`` prints before the first trial, and a warning about a weak
    ``--lr auto`` range test, or None. ``space`` is the one trials draw from (batch range
    capped); ``stored`` the spec of the study resumed (see :func:`search_phrase`)."""
    state = f"resuming, {previous_trials} trials so far" if previous_trials else "new"
    lines = [
        f"study {name} ({state}) in {masked_storage}",
        f"  {spec.dataset}, {spec.model}, {spec.folds} folds x {training_phrase(spec)} on "
        f"{device}; batch_size {space.batch_size[0]}:{space.batch_size[1]}, "
        f"{lr_ranges_phrase(space, ':')}",
        f"  {search_phrase(spec, stored)}",
    ]
    found = spec.lr_find
    if not found:
        return lines, None
    # The trials draw their own momentum: the lr suggested holds at the test's.
    suggestions = ", ".join(
        f"{optimizer} {record['suggested_lr']:.3g}"
        + (f" at momentum {record['momentum']:g}" if record.get("momentum") else "")
        for optimizer, record in found.items()
    )
    batch_sizes = sorted({record.get("batch_size") for record in found.values()} - {None})
    at = f" at batch {batch_sizes[0]}" if len(batch_sizes) == 1 else ""
    lines.append(f"  --lr auto: LR range tests{at} suggested {suggestions}")
    warnings = [
        lr_test_warning(
            record.get("loss_drop", 1.0),
            record.get("spread", 1.0),
            "its lr range may be off; a new --study with --lr MIN:MAX can search another",
            optimizer,
        )
        for optimizer, record in found.items()
    ]
    return lines, "\n".join(filter(None, warnings)) or None


def search_phrase(spec: StudySpec, stored: StudySpec | None = None) -> str:
    """The sampler and pruner this run searches with: a run may give others than the study's
    (``stored``), which it names."""
    if len(spec.training.objectives) > 1:
        pruning = "no pruning (two objectives report no epochs)"
    elif spec.training.budget.round_count == 1 and spec.pruner != "none":
        pruning = f"pruner {spec.pruner}, which prunes nothing: a trial's one report is its last"
    else:
        pruning = f"pruner {spec.pruner}"
    phrase = f"sampler {spec.sampler}, {pruning}"
    if stored is None:
        return phrase
    created = [
        f"{name} {old}"
        for name, new, old in (
            ("sampler", spec.sampler, stored.sampler),
            ("pruner", spec.pruner, stored.pruner),
        )
        if new != old
    ]
    return (
        f"{phrase} (this run; the study was created with {' and '.join(created)})"
        if created
        else phrase
    )


def lr_ranges_phrase(space: SearchSpace, joiner: str) -> str:
    """The optimizers and lr (or base_lr) ranges of ``space``: ``lr 0.0001:1 (sgd,adam)``
    where one range serves every optimizer, else ``lr sgd 0.001:1, adam 1e-05:0.1``
    (``joiner`` between the ends)."""
    if space.lr is not None:
        low, high = space.lr
        return f"{space.lr_param} {low:.3g}{joiner}{high:.3g} ({','.join(space.optimizers)})"
    ranges = (
        f"{name} {low:.3g}{joiner}{high:.3g}"
        for name, (low, high) in ((name, space.lr_range(name)) for name in space.optimizers)
    )
    return f"{space.lr_param} {', '.join(ranges)}"


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
        f"Searches `batch_size` {space.batch_size[0]}..{space.batch_size[1]} and "
        f"{lr_ranges_phrase(space, '..')}, both on a log scale.\n\n"
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
    state, reason = trial.state.name.lower(), TrialRecord.from_trial(trial).reason
    # "pruned" would repeat the state; "diverged", "interrupted" or "worker lost" say why.
    why = "" if reason in (None, state) else reason
    return (
        f"trial {trial.number:>4}  {state:<8} {value:<7} {seconds:6.1f}s wall  "
        f"{format_params(trial.params)}  {why}"
    ).rstrip()


def outcome(
    study: optuna.Study,
    storage: str,
    stop_after: int | None = None,
    run_from: int = 0,
    done_before: Stop | None = None,
) -> str:
    """What ``batchlr run`` prints at the end: the best trial, the Pareto front, and what to do
    next; the commands name ``storage`` unless they find it by themselves (the default, or
    the environment's). ``stop_after``: the finished trials ``--stop auto`` needs before it
    judges, when the run was given it, to say whether and why it stopped the run (which
    began with ``run_from`` trials in the study, or ran none for ``done_before``), or that it
    has not judged yet."""
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
    facts = data_facts(study)
    if facts is not None and best.values[0] <= facts.chance + LEARNED_MARGIN * (1 - facts.chance):
        lines.append(
            f"warning: no trial learned: the best accuracy is less than {LEARNED_MARGIN:.0%} of "
            f"the way from guessing ({facts.chance:.4f}, {facts.classes} classes) to 1; move or "
            "widen --lr, or give more --epochs"
        )
    if stop_after is not None:
        lines += _stop_lines(study, stop_after, run_from, done_before)
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


def _stop_lines(
    study: optuna.Study, stop_after: int, run_from: int, done_before: Stop | None
) -> list[str]:
    """Why ``--stop auto`` ran no trial (``done_before``) or stopped the run that began with
    ``run_from`` trials; else, with fewer finished trials than ``stop_after``, that it has not
    judged."""
    if done_before is not None:
        return [
            f"stopped by --stop auto before a trial: the study's {done_before.finished_trials} "
            f"finished trials had already stopped improving ({done_before.reason}); run without "
            "--stop auto for more trials"
        ]
    stop = last_stop(study)
    if stop is not None and stop.next_trial > run_from:
        return [
            f"stopped by --stop auto after {stop.finished_trials} finished trials: {stop.reason}"
        ]
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    if finished < stop_after:
        return [
            f"--stop auto has not judged: {finished} finished trials, it judges from {stop_after}"
        ]
    return []
