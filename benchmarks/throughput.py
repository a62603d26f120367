"""Training throughput (images/s) and seconds per trial of the batchlr objective.

    python benchmarks/throughput.py --dataset digits --device cpu
    python benchmarks/throughput.py --dataset imagefolder:../shared/data/cifar10-subset/train --epochs 1

Each batch size runs one trial of the real objective (k folds in lockstep) with Adam at
lr 1e-3 and prints the images per second and seconds the trial recorded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import optuna

from batchlr.objectives.data import assign_folds, load_dataset
from batchlr.objectives.objective import CrossValidationObjective
from batchlr.objectives.settings import Budget, TrainingSettings
from batchlr.objectives.trainer import Trainer
from batchlr.objectives.training import resolve_device
from batchlr.search.space import SearchSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", default="16,64,256")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir)
    folds = assign_folds(data.labels.numpy(), args.folds, seed=0, holdout=data.test_images is None)
    device = resolve_device(args.device)
    settings = TrainingSettings(budget=Budget("epochs", args.epochs))
    trainer = Trainer.on(data, folds.searched(), args.model, settings, device)
    space = SearchSpace(batch_size=(1, 1 << 20))
    objective = CrossValidationObjective(trainer, data, folds, space, seed=0)
    print(
        f"{args.dataset}: {tuple(data.images.shape)} loaded in "
        f"{time.perf_counter() - started:.1f} s; {args.model} on {device}"
    )
    print(f"{'batch':>6}  {'images/s':>9}  {'s/epoch/fold':>12}  {'s/trial':>8}  {'accuracy':>8}")
    for batch_size in map(int, args.batch_sizes.split(",")):
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"batch_size": batch_size, "lr": 1e-3, "optimizer": "adam"})
        trial_started = time.perf_counter()
        study.optimize(objective, n_trials=1)
        seconds = time.perf_counter() - trial_started
        attrs, value = study.trials[0].user_attrs, study.trials[0].value
        print(
            f"{batch_size:>6}  {attrs['images_per_second']:>9.0f}  "
            f"{attrs['seconds_per_epoch']:>12.2f}  {seconds:>8.1f}  {value:>8.4f}"
        )


if __name__ == "__main__":
    main()
