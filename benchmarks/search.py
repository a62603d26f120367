r"""What each search strategy spends until it first reaches the target accuracy.

    python benchmarks/search.py --dataset digits --seeds 3
    python benchmarks/search.py --dataset imagefolder:../shared/data/cifar10-subset/train \
        --epochs 3 --n-trials 20 --seeds 2

Every strategy is a set of ``batchlr run`` options over the same data, model, budget and trial
count, run once per seed (0, 1, ...; the seed draws the folds too). The baseline is plain TPE
without pruning (``--sampler tpe --pruner none``). The target is the best accuracy any run
found, less ``--tolerance`` (1 point). A study's cost is the training images its trials trained
(pruned trials included, as user attr ``train_images`` records them) up to and including the
first complete trial that reaches the target. Prints per strategy the seeds that reached it,
the median and range of that cost over the seeds that did, its ratio to the baseline's median,
and the medians of the final best accuracy and of the whole study's training images.

With ``--storage``, a study it holds that a finished run of this script made with the same
settings is read, not run again: strategies can be added to a table later. Any other study of
a name it would run ends it, with the names to delete.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import tempfile
from pathlib import Path

import optuna
from common.runs import run_batchlr

from batchlr.objectives.trial_record import TrialRecord

STRATEGIES = {
    "baseline": ["--sampler", "tpe", "--pruner", "none"],
    "default": [],
    "tpe+asha": ["--sampler", "tpe", "--pruner", "asha"],
    "tpe+median": ["--sampler", "tpe", "--pruner", "median"],
    "tpe+wilcoxon": ["--sampler", "tpe", "--pruner", "wilcoxon"],
    "tpe+hyperband": ["--sampler", "tpe", "--pruner", "hyperband"],
    "ridge+none": ["--sampler", "ridge", "--pruner", "none"],
    "ridge+hyperband": ["--sampler", "ridge", "--pruner", "hyperband"],
    "default+stop": ["--stop", "auto"],
}
"""Each strategy's options; ``default`` is ``batchlr run`` with no search options (the ridge
sampler with ASHA)."""
MARK = "benchmark"
"""The study user attr that holds what a finished run of this script ran it with."""


def run_study(name: str, seed: int, options: list[str], args: argparse.Namespace) -> None:
    """Run one study to its end with ``batchlr run``, the CPU's threads shared among the jobs,
    and mark it finished with what it ran with (see :func:`settings`)."""
    common = [
        "--dataset",
        args.dataset,
        "--epochs",
        str(args.epochs),
        "--n-trials",
        str(args.n_trials),
        "--seed",
        str(seed),
        "--device",
        args.device,
    ]
    run_batchlr(name, args.storage, [*common, *options], max(1, (os.cpu_count() or 1) // args.jobs))
    study = optuna.load_study(study_name=name, storage=args.storage)
    study.set_user_attr(MARK, settings(seed, options, args))


def settings(seed: int, options: list[str], args: argparse.Namespace) -> dict[str, object]:
    """What decides a study's trials, as :data:`MARK` keeps it."""
    return {
        "dataset": args.dataset,
        "device": args.device,
        "epochs": args.epochs,
        "n_trials": args.n_trials,
        "seed": seed,
        "options": options,
    }


def studies_to_run(
    runs: list[tuple[str, int]], args: argparse.Namespace, parser: argparse.ArgumentParser
) -> list[tuple[str, int]]:
    """The ``runs`` that ``--storage`` holds no study of. It ends the script, deleting nothing,
    where it holds one that no finished run of this script made with these settings (an
    interrupted run, another program's or settings' study)."""
    existing = set(optuna.get_all_study_names(args.storage))
    foreign = [
        f"{name}-{seed}"
        for name, seed in runs
        if f"{name}-{seed}" in existing
        and optuna.load_study(study_name=f"{name}-{seed}", storage=args.storage).user_attrs.get(
            MARK
        )
        != settings(seed, STRATEGIES[name], args)
    ]
    if foreign:
        parser.error(
            f"--storage holds {', '.join(foreign)}, not finished runs of this script with these "
            "settings; give another --storage, or delete them (optuna delete-study --storage URL "
            "--study-name NAME)"
        )
    return [(name, seed) for name, seed in runs if f"{name}-{seed}" not in existing]


def cost_to(study: optuna.Study, target: float) -> int | None:
    """Training images spent until the first complete trial at ``target`` or better, or None."""
    spent = 0
    for trial in sorted(study.trials, key=lambda trial: trial.number):
        spent += TrialRecord.from_trial(trial).train_images or 0
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.values[0] >= target:
            return spent
    return None


def reached_costs(
    studies: dict[tuple[str, int], optuna.Study], name: str, target: float
) -> list[float]:
    """Strategy ``name``'s cost to ``target`` in millions of training images, for each seed
    that reached it."""
    costs = [cost_to(study, target) for (each, _), study in studies.items() if each == name]
    return [cost / 1e6 for cost in costs if cost is not None]


def whole_cost(study: optuna.Study) -> float:
    """The training images of every trial of ``study``, in millions."""
    return sum(TrialRecord.from_trial(trial).train_images or 0 for trial in study.trials) / 1e6


def positive(text: str) -> int:
    """A whole number of at least 1, for argparse."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--seeds", type=positive, default=3)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--jobs", type=positive, default=1, help="Studies run at once.")
    parser.add_argument(
        "--storage", help="Where the studies are kept.  [default: a temporary file]"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = args.strategies.split(",")
    unknown = sorted(set(names) - set(STRATEGIES))
    if unknown:
        parser.error(
            f"unknown strategies {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}"
        )
    with tempfile.TemporaryDirectory() as scratch:
        args.storage = args.storage or f"sqlite:///{Path(scratch) / 'search.db'}"
        runs = [(name, seed) for name in names for seed in range(args.seeds)]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for done in [
                pool.submit(run_study, f"{name}-{seed}", seed, STRATEGIES[name], args)
                for name, seed in studies_to_run(runs, args, parser)
            ]:
                done.result()
        studies = {
            run: optuna.load_study(study_name=f"{run[0]}-{run[1]}", storage=args.storage)
            for run in runs
        }
        target = max(study.best_value for study in studies.values()) - args.tolerance
        print(f"target accuracy {target:.4f} (the best of all runs less {args.tolerance:g})")
        print(
            f"{'strategy':<16} {'reached':>7} {'images (M)':>11} {'range':>13} {'vs baseline':>11} "
            f"{'final best':>10} {'whole (M)':>11}"
        )
        baseline_costs = reached_costs(studies, "baseline", target) if "baseline" in names else []
        baseline = statistics.median(baseline_costs) if baseline_costs else None
        for name in names:
            reached = reached_costs(studies, name, target)
            median = statistics.median(reached) if reached else None
            seeds = [studies[name, seed] for seed in range(args.seeds)]
            best = statistics.median(study.best_value for study in seeds)
            whole = statistics.median(whole_cost(study) for study in seeds)
            span = f"{min(reached):.3f}-{max(reached):.3f}" if reached else "-"
            ratio = f"{median / baseline:.2f}x" if median and baseline else "-"
            shown = f"{median:.3f}" if median is not None else "-"
            print(
                f"{name:<16} {len(reached):>3} of {args.seeds:<1} {shown:>11} {span:>13} "
                f"{ratio:>11} {best:>10.4f} {whole:>11.3f}"
            )


if __name__ == "__main__":
    main()
