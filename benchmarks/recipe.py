r"""Where the best configuration moves when trials train with the user's recipe.

    python benchmarks/recipe.py --dataset imagefolder:../shared/data/cifar10-subset/train \
        --model convnet-bn --folds 3 --epochs 15 --trials 12
    python benchmarks/recipe.py --dataset imagefolder:../shared/data/cifar10-subset/train \
        --model resnet20 --trials 6

Runs the same TPE study (same seed, same search space) twice with ``batchlr run``: once
plain, once with ``--recipe`` (by default augmentation and a searched weight decay), and
prints each study's best CV accuracy and where its best lr and batch size landed.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

import optuna
from common.runs import run_batchlr

DEFAULT_RECIPE = "--augment flip,crop --weight-decay 1e-5:1e-2"


def run_study(
    name: str, storage: str, common: list[str], extra: list[str]
) -> tuple[optuna.Study, float]:
    """Run one study to its end and return it with the wall-clock seconds it took."""
    seconds = run_batchlr(name, storage, [*common, *extra])
    return optuna.load_study(study_name=name, storage=storage), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="convnet-bn")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--batch-size", default="16:512")
    parser.add_argument("--lr", default="1e-4:1")
    parser.add_argument("--optimizers", default="sgd,adam,rmsprop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe", default=DEFAULT_RECIPE, help="batchlr run options of the second study"
    )
    args = parser.parse_args()
    common = [
        "--dataset",
        args.dataset,
        "--model",
        args.model,
        "--folds",
        str(args.folds),
        "--epochs",
        str(args.epochs),
        "--n-trials",
        str(args.trials),
        "--batch-size",
        args.batch_size,
        "--lr",
        args.lr,
        "--optimizers",
        args.optimizers,
        "--device",
        args.device,
        "--seed",
        str(args.seed),
        "--sampler",
        "tpe",
    ]
    print(
        f"{args.dataset}, {args.model}, {args.folds} folds x {args.epochs} epochs, {args.trials} "
        f"TPE trials, seed {args.seed}"
    )
    print(
        f"{'study':<8} {'best CV':>8} {'lr':>9} {'batch':>6} {'optimizer':>9} {'decay':>9} "
        f"{'complete':>8} {'pruned':>6} {'minutes':>7}  options"
    )
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'recipe.db'}"
        for name, extra in (("plain", []), ("recipe", shlex.split(args.recipe))):
            study, seconds = run_study(name, storage, common, extra)
            states = [trial.state for trial in study.trials]
            complete = [
                trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE
            ]
            best = max(complete, key=lambda trial: trial.value) if complete else None
            params = best.params if best else {}
            decay = params.get("weight_decay", 0.0)
            print(
                f"{name:<8} {best.value if best else float('nan'):>8.4f} "
                f"{best.user_attrs.get('lr', float('nan')) if best else float('nan'):>9.3g} "
                f"{params.get('batch_size', '-'):>6} {params.get('optimizer', '-'):>9} {decay:>9.3g} "
                f"{len(complete):>8} {states.count(optuna.trial.TrialState.PRUNED):>6} "
                f"{seconds / 60:>7.1f}  {' '.join(extra) or '(none)'}"
            )


if __name__ == "__main__":
    main()
