r"""The fitted lr ridge checked at a held-out batch size, on real data.

    python benchmarks/ridge.py --dataset imagefolder:../shared/data/cifar10-subset/train

For each optimizer: a grid study with ``batchlr run`` (batch sizes from 16 to 512, lrs over the
optimizer's range, no pruning, 2 folds x 3 epochs), its ridge fitted as ``batchlr show`` fits
it; then, at a batch size held out of the grid, a dense study of lrs 0.15 decade apart around
the ridge's prediction. Prints per optimizer the fitted exponent and its interval, the
predicted and the measured best lr at the held-out batch size, how far apart they are in
decades, and the accuracy lost by training with the prediction; then a text plot of each
batch size's best lr on the grid (o), the ridge (.), and at the held-out batch size the
prediction (+) and the measured best (*). Studies that exist in ``--storage`` are reused.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import optuna
from common.runs import run_batchlr

from batchlr.studies.results import Ridge, scored_trials, study_answer

LR_RANGES = {
    "sgd": (1e-3, 1.0),
    "adam": (1e-4, 1e-1),
    "rmsprop": (1e-5, 1e-1),
    "adamw": (1e-4, 1e-1),
}


def run_study(name: str, args: argparse.Namespace, extra: list[str], trials: int) -> optuna.Study:
    """The study ``name`` in ``args.storage``, run with ``batchlr run`` unless it exists."""
    if name not in optuna.get_all_study_names(args.storage):
        common = [
            "--dataset",
            args.dataset,
            "--folds",
            str(args.folds),
            "--epochs",
            str(args.epochs),
            "--sampler",
            "grid",
            "--pruner",
            "none",
            "--device",
            args.device,
            "--n-trials",
            str(trials),
        ]
        cache = ["--cache-dir", args.cache_dir] if args.cache_dir else []
        run_batchlr(name, args.storage, [*common, *cache, *extra])
    return optuna.load_study(study_name=name, storage=args.storage)


def held_out_check(optimizer: str, args: argparse.Namespace) -> tuple[Ridge, dict[str, float]]:
    """The grid's ridge for ``optimizer`` and what the dense study at the held-out batch found."""
    low, high = LR_RANGES[optimizer]
    grid = run_study(
        f"ridge-{optimizer}",
        args,
        [
            "--optimizers",
            optimizer,
            "--batch-size",
            args.batch_size,
            "--lr",
            f"{low}:{high}",
            "--grid-points",
            f"lr={args.lr_points},batch_size={args.batch_points}",
        ],
        args.lr_points * args.batch_points,
    )
    fit = study_answer(grid).ridges[optimizer]
    if fit.ridge is None:
        raise SystemExit(f"{optimizer}: no ridge fitted: {fit.reason}")
    predicted = fit.ridge.lr(args.held_out)
    span = args.dense_step * (args.dense_points - 1) / 2
    dense = run_study(
        f"ridge-{optimizer}-at-{args.held_out}",
        args,
        [
            "--optimizers",
            optimizer,
            "--batch-size",
            f"{args.held_out}:{args.held_out}",
            "--lr",
            f"{predicted * 10**-span:.6g}:{predicted * 10**span:.6g}",
            "--grid-points",
            f"lr={args.dense_points}",
        ],
        args.dense_points,
    )
    trials = scored_trials(dense.trials, None)
    best = max(trials, key=lambda trial: trial.value)
    nearest = min(trials, key=lambda trial: abs(math.log10(trial.lr / predicted)))
    return fit.ridge, {
        "predicted": predicted,
        "measured": best.lr,
        "decades": math.log10(best.lr / predicted),
        "best_accuracy": best.value,
        "accuracy_at_prediction": nearest.value,
    }


def grid_optima(study: optuna.Study) -> dict[int, float]:
    """Each batch size's most accurate lr on the grid."""
    best: dict[int, tuple[float, float]] = {}
    for trial in scored_trials(study.trials, None):
        if trial.batch_size not in best or trial.value > best[trial.batch_size][0]:
            best[trial.batch_size] = (trial.value, trial.lr)
    return {batch: lr for batch, (_, lr) in sorted(best.items())}


def text_plot(
    ridge: Ridge, optima: dict[int, float], held_out: int, check: dict[str, float]
) -> list[str]:
    """log10 lr (rows, 0.25 decade each) over the batch sizes (columns)."""
    columns = sorted({*optima, held_out})
    lrs = [*optima.values(), check["predicted"], check["measured"], *map(ridge.lr, columns)]
    top, bottom = (
        math.ceil(max(map(math.log10, lrs)) * 4),
        math.floor(min(map(math.log10, lrs)) * 4),
    )
    lines = []
    for row in range(top, bottom - 1, -1):
        cells = []
        for batch in columns:
            marks = [
                (batch == held_out and round(math.log10(check["measured"]) * 4) == row, "*"),
                (batch == held_out and round(math.log10(check["predicted"]) * 4) == row, "+"),
                (batch in optima and round(math.log10(optima[batch]) * 4) == row, "o"),
                (round(math.log10(ridge.lr(batch)) * 4) == row, "."),
            ]
            cells.append(next((mark for hit, mark in marks if hit), " "))
        lines.append(f"{10 ** (row / 4):>9.2g} |" + "".join(f"{cell:^6}" for cell in cells))
    lines.append(" " * 10 + "+" + "-" * 6 * len(columns))
    lines.append(" " * 11 + "".join(f"{batch:^6}" for batch in columns))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="imagefolder:../shared/data/cifar10-subset/train")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--optimizers", default="sgd,adam")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", default="16:512")
    parser.add_argument("--batch-points", type=int, default=6)
    parser.add_argument("--lr-points", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=96, help="A batch size off the grid.")
    parser.add_argument("--dense-step", type=float, default=0.15, help="Decades between lrs.")
    parser.add_argument("--dense-points", type=int, default=9)
    parser.add_argument(
        "--storage", help="Where the studies are kept.  [default: a temporary file]"
    )
    parser.add_argument("--cache-dir")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        args.storage = args.storage or f"sqlite:///{Path(scratch) / 'ridge.db'}"
        results = {name: held_out_check(name, args) for name in args.optimizers.split(",")}
        print(f"held-out batch size {args.held_out}: the ridge's lr against the measured best")
        print(
            f"{'optimizer':<10} {'alpha [95 %]':<22} {'predicted':>9} {'measured':>9} "
            f"{'decades':>7} {'acc lost':>8}"
        )
        for name, (ridge, check) in results.items():
            low, high = ridge.alpha_interval
            interval = f"{ridge.alpha:.2f} [{low:.2f}, {high:.2f}]"
            lost = check["best_accuracy"] - check["accuracy_at_prediction"]
            print(
                f"{name:<10} {interval:<22} {check['predicted']:>9.3g} {check['measured']:>9.3g} "
                f"{check['decades']:>+7.2f} {lost:>8.4f}"
            )
        for name, (ridge, check) in results.items():
            study = optuna.load_study(study_name=f"ridge-{name}", storage=args.storage)
            print(
                f"\n{name}: best lr per batch size (o), ridge (.), at {args.held_out}: "
                "predicted (+), measured (*)"
            )
            print("\n".join(text_plot(ridge, grid_optima(study), args.held_out, check)))


if __name__ == "__main__":
    main()
